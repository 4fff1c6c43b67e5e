import type { ServerDuplexStream, ServerUnaryCall, sendUnaryData } from '@grpc/grpc-js';
import { asSluiceError, type Logger, toServiceError } from '@sluice/common';

/** Adapt an async function to a grpc-js unary handler, mapping errors to statuses. */
export function unary<Req, Res>(
  logger: Logger,
  fn: (req: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res>,
): (call: ServerUnaryCall<Req, Res>, cb: sendUnaryData<Res>) => void {
  return (call, cb) => {
    fn(call.request, call).then(
      (res) => cb(null, res),
      (err) => {
        const e = asSluiceError(err);
        if (e.code === 'INTERNAL') logger.error({ err }, 'request failed');
        cb(toServiceError(e));
      },
    );
  };
}

/** End a bidi stream with an error status (grpc-js sends it as the trailers). */
export function endWithError<Req, Res>(call: ServerDuplexStream<Req, Res>, err: unknown): void {
  if (call.destroyed || call.writableEnded) return;
  call.emit('error', toServiceError(err));
}

/** Names the oneof field set on a request decoded with `oneofs: true`. */
export function oneofCase(msg: unknown, field: string): string | undefined {
  if (!msg || typeof msg !== 'object') return undefined;
  const v = (msg as Record<string, unknown>)[field];
  return typeof v === 'string' ? v : undefined;
}
