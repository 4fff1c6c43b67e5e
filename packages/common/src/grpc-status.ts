import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { asSluiceError, errorFromCode, errorFromStatus, type SluiceError } from './errors.js';

/** Trailing-metadata key that carries the stable Sluice error code. */
export const ERROR_CODE_METADATA_KEY = 'sluice-error-code';
/** Prefix of trailing-metadata keys that carry `SluiceError.details`. */
export const ERROR_DETAIL_METADATA_PREFIX = 'sluice-';

/** The status object a grpc-js handler passes to its callback or `stream.destroy`. */
export interface GrpcErrorStatus {
  code: number;
  details: string;
  metadata: Metadata;
}

/** Turn any thrown value into a gRPC status with the Sluice code and details in trailers. */
export function toGrpcStatus(err: unknown): GrpcErrorStatus {
  const e = asSluiceError(err);
  const metadata = new Metadata();
  metadata.set(ERROR_CODE_METADATA_KEY, e.code);
  for (const [k, v] of Object.entries(e.details)) metadata.set(`${ERROR_DETAIL_METADATA_PREFIX}${k}`, v);
  return { code: e.grpcStatus, details: e.message, metadata };
}

/** The Error object grpc-js expects from a handler (a ServiceError shape). */
export function toServiceError(err: unknown): Partial<ServiceError> & Error {
  const s = toGrpcStatus(err);
  return Object.assign(new Error(s.details), s);
}

/** Rebuild a typed SluiceError from a grpc-js client error. */
export function fromGrpcError(err: unknown): SluiceError {
  const e = err as Partial<ServiceError>;
  if (typeof e?.code !== 'number') return asSluiceError(err);
  const details: Record<string, string> = {};
  let code: string | undefined;
  if (e.metadata) {
    for (const [k, v] of Object.entries(e.metadata.getMap())) {
      if (k === ERROR_CODE_METADATA_KEY) code = String(v);
      else if (k.startsWith(ERROR_DETAIL_METADATA_PREFIX))
        details[k.slice(ERROR_DETAIL_METADATA_PREFIX.length)] = String(v);
    }
  }
  const message = e.details || e.message || 'unknown gRPC error';
  return code
    ? errorFromCode(code, message, { cause: err, details })
    : errorFromStatus(e.code, message, { cause: err, details });
}
