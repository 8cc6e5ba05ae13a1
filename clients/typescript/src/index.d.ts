import type { Transport } from '@connectrpc/connect';

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

/** A Connect transport to omo that sends `authorization: Bearer <apiKey>` on every call. */
export declare function omoTransport(
  baseUrl: string,
  apiKey: string,
  options?: { binary?: boolean },
): Transport;
