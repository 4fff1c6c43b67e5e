/**
 * S3 SDK failures as Sluice errors. Anything that may succeed on a later try
 * (no connection, timeouts, throttling, 5xx) is an UnavailableError, which
 * callers retry with backoff; configuration mistakes are not retriable.
 */
import {
  CorruptDataError,
  FailedPreconditionError,
  InternalError,
  NotFoundError,
  PermissionDeniedError,
  type SluiceError,
  SluiceError as SluiceErrorClass,
  UnauthenticatedError,
  UnavailableError,
} from '@sluice/common';

interface SdkErrorShape {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'ECONNABORTED',
]);

export function s3Error(err: unknown, op: string, target: string): SluiceError {
  if (err instanceof SluiceErrorClass) return err;
  const e = (err ?? {}) as SdkErrorShape;
  const status = e.$metadata?.httpStatusCode;
  const name = e.name ?? '';
  const detail = e.message || name || String(err);
  const what = `S3 ${op} of ${target} failed: ${detail}`;
  const options = { cause: err };
  if (name === 'NoSuchBucket') {
    return new FailedPreconditionError(`${what}; create the bucket or fix the offload URL`, options);
  }
  if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) {
    return new NotFoundError(`S3 object ${target} does not exist`, options);
  }
  if (name === 'InvalidRange' || status === 416) {
    return new CorruptDataError(`${what}; the object is shorter than its index says`, options);
  }
  if (name === 'CredentialsProviderError') {
    return new UnauthenticatedError(
      `${what}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or configure ~/.aws/credentials`,
      options,
    );
  }
  if (
    status === 401 ||
    status === 403 ||
    ['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch'].includes(name)
  ) {
    return new PermissionDeniedError(`${what}; check the credentials and the bucket policy`, options);
  }
  if (
    status === undefined ||
    status >= 500 ||
    status === 429 ||
    status === 408 ||
    NETWORK_CODES.has(e.code ?? '') ||
    NETWORK_CODES.has(name) ||
    name === 'TimeoutError' ||
    name === 'RequestTimeout' ||
    name === 'SlowDown'
  ) {
    return new UnavailableError(
      `${what}; the endpoint is unreachable or overloaded, retry with backoff`,
      options,
    );
  }
  return new InternalError(what, options);
}
