import {
  CorruptDataError,
  FailedPreconditionError,
  InternalError,
  isRetriable,
  NotFoundError,
  PermissionDeniedError,
  UnauthenticatedError,
  UnavailableError,
} from '@sluice/common';
import test from 'ava';
import { s3Error } from './s3-errors.js';

function sdkError(name: string, status?: number, code?: string): Error {
  const err = new Error(`${name} happened`) as Error & { $metadata?: unknown; code?: string };
  err.name = name;
  if (status !== undefined) err.$metadata = { httpStatusCode: status };
  if (code) err.code = code;
  return err;
}

test('s3 errors - map to Sluice errors with the right retriability', (t) => {
  const cases: [Error, new (...args: never[]) => Error, boolean][] = [
    [sdkError('NoSuchKey', 404), NotFoundError, false],
    [sdkError('NotFound', 404), NotFoundError, false],
    [sdkError('NoSuchBucket', 404), FailedPreconditionError, false],
    [sdkError('InvalidRange', 416), CorruptDataError, false],
    [sdkError('AccessDenied', 403), PermissionDeniedError, false],
    [sdkError('CredentialsProviderError'), UnauthenticatedError, false],
    [sdkError('InternalError', 500), UnavailableError, true],
    [sdkError('SlowDown', 503), UnavailableError, true],
    [sdkError('TimeoutError'), UnavailableError, true],
    [sdkError('Error', undefined, 'ECONNREFUSED'), UnavailableError, true],
    [sdkError('MalformedXML', 400), InternalError, false],
  ];
  for (const [err, type, retriable] of cases) {
    const mapped = s3Error(err, 'GET', 's3://b/k');
    t.true(mapped instanceof type, `${err.name} -> ${mapped.name}`);
    t.is(isRetriable(mapped), retriable, err.name);
    t.is(mapped.cause, err);
  }
});

test('s3 errors - messages name the object and say what to do', (t) => {
  t.regex(s3Error(sdkError('NoSuchBucket', 404), 'PUT', 's3://b/k').message, /create the bucket/);
  t.regex(s3Error(sdkError('CredentialsProviderError'), 'PUT', 's3://b/k').message, /AWS_ACCESS_KEY_ID/);
  t.regex(s3Error(sdkError('x', 503), 'ranged GET', 's3://b/k').message, /ranged GET of s3:\/\/b\/k/);
});
