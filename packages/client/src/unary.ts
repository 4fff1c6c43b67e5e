import type * as grpc from '@grpc/grpc-js';
import { fromGrpcError } from '@sluice/common';

/** Default deadline of unary calls (lookup, admin). */
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;

type UnaryMethod<Req, Res> = (
  request: Req,
  options: grpc.CallOptions,
  callback: (err: grpc.ServiceError | null, value?: Res) => void,
) => grpc.ClientUnaryCall;

/** Run one unary call with a deadline; failures become typed Sluice errors. */
export function unary<Req, Res>(
  client: grpc.Client,
  method: UnaryMethod<Req, Res>,
  request: Req,
  timeoutMs = DEFAULT_CALL_TIMEOUT_MS,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, request, { deadline: Date.now() + timeoutMs }, (err, value) => {
      if (err) reject(fromGrpcError(err));
      else resolve(value as Res);
    });
  });
}
