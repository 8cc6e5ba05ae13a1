// The omo client: the services and messages generated from proto/ (src/gen, by generate.sh),
// and a transport that sends the API key on every call.
import { createConnectTransport } from '@connectrpc/connect-node';

export * from './gen/omo/v1/common_pb.js';
export * from './gen/omo/v1/member_pb.js';
export * from './gen/omo/v1/store_pb.js';
export * from './gen/omo/v1/program_pb.js';
export * from './gen/omo/v1/ledger_pb.js';
export * from './gen/omo/v1/checkout_pb.js';
export * from './gen/omo/v1/coupon_pb.js';
export * from './gen/omo/v1/engagement_pb.js';
export * from './gen/omo/v1/report_pb.js';
export * from './gen/omo/v1/rule_pb.js';
export { ErrorInfoSchema, BadRequestSchema } from './gen/google/rpc/error_details_pb.js';

/**
 * A Connect transport to omo at `baseUrl` (e.g. "http://127.0.0.1:50051") that authenticates
 * every call with `apiKey`. JSON over HTTP/1.1 by default; `{ binary: true }` sends protobuf
 * over HTTP/2.
 */
export function omoTransport(baseUrl, apiKey, { binary = false } = {}) {
  return createConnectTransport({
    baseUrl,
    httpVersion: binary ? '2' : '1.1',
    useBinaryFormat: binary,
    interceptors: [
      (next) => (request) => {
        request.header.set('authorization', `Bearer ${apiKey}`);
        return next(request);
      },
    ],
  });
}
