// The TypeScript client against a real omo server (run by tests/api/typescript.rs):
// CreateMember, RecordSale, GetBalance over Connect JSON and binary, and a Connect error's
// reason. Usage: node test/smoke.mjs BASE_URL ADMIN_KEY
import { createClient, ConnectError, Code } from '@connectrpc/connect';
import {
  omoTransport, MemberService, CheckoutService, LedgerService, Channel, ErrorInfoSchema,
} from '../src/index.js';

const [baseUrl, apiKey] = process.argv.slice(2);
if (!baseUrl || !apiKey) {
  console.error('usage: smoke.mjs BASE_URL ADMIN_KEY');
  process.exit(2);
}
function check(condition, message) {
  if (!condition) throw new Error(`FAILED: ${message}`);
  console.log(`ok - ${message}`);
}

const json = omoTransport(baseUrl, apiKey);
const members = createClient(MemberService, json);
const checkout = createClient(CheckoutService, json);
const ledger = createClient(LedgerService, json);

const card = { kind: 'card', value: 'ts-1' };
const { member } = await members.createMember({ requestId: 'ts-member-1', identifiers: [card], displayName: 'TS' });
check(member && member.memberId.length > 0, `CreateMember made ${member.memberId}`);

const { order } = await checkout.recordSale({
  requestId: 'ts-sale-1',
  orderId: 'shibuya-1-ts-1',
  member: { ref: { case: 'identifier', value: card } },
  channel: Channel.STORE,
  storeId: 'shibuya',
  registerId: '1',
  receiptNo: 'ts-1',
  basket: { lines: [{ lineId: 'L1', sku: 'SKU-1', category: 'grocery', quantity: 1, amount: '5000' }] },
});
check(order.pointsEarned > 0n, `RecordSale earned ${order.pointsEarned} points`);

const { balance } = await ledger.getBalance({ member: { ref: { case: 'memberId', value: member.memberId } } });
check(balance.availablePoints === order.pointsEarned, `GetBalance shows ${balance.availablePoints} available`);

// The same call in binary over HTTP/2.
const binaryLedger = createClient(LedgerService, omoTransport(baseUrl, apiKey, { binary: true }));
const binary = await binaryLedger.getBalance({ member: { ref: { case: 'memberId', value: member.memberId } } });
check(binary.balance.availablePoints === balance.availablePoints, 'binary Connect over HTTP/2 agrees');

// A refusal: its code and the ErrorInfo reason.
try {
  await ledger.getBalance({ member: { ref: { case: 'memberId', value: 'no-such-member' } } });
  check(false, 'an unknown member is refused');
} catch (error) {
  const connectError = ConnectError.from(error);
  check(connectError.code === Code.NotFound, `unknown member: code ${Code[connectError.code]}`);
  const [info] = connectError.findDetails(ErrorInfoSchema);
  check(info !== undefined, 'the error carries an ErrorInfo');
  console.log(`reason ${info.reason}`);
}
