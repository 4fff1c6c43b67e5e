import { isRetriable, type SluiceError } from '@sluice/common';

/**
 * Which failures a producer or consumer rides out by looking the topic up
 * again and reconnecting. A moved or fenced topic, a dead broker or a lost
 * session are transient in a cluster whose brokers are stateless; bad input,
 * a missing topic or missing rights are not, and retrying would only hide them.
 */
const FATAL_AFTER_OPEN = new Set([
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'PERMISSION_DENIED',
  'UNAUTHENTICATED',
  'CORRUPT',
]);

/** Redirect target named by a broker that does not own the topic ('' while ownership moves). */
export function ownerHint(err: SluiceError): string | undefined {
  const owner = err.details.owner;
  return owner === undefined || owner === '' ? undefined : owner;
}

/** Retry the first open of a producer/consumer? Only for clearly transient failures. */
export function retryOnOpen(err: SluiceError): boolean {
  return isRetriable(err) || err.code === 'FENCED' || err.details.owner !== undefined;
}

/** Keep reconnecting an established producer/consumer after this failure? */
export function retryAfterOpen(err: SluiceError): boolean {
  return !FATAL_AFTER_OPEN.has(err.code);
}
