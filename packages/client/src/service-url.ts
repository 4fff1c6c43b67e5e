import { InvalidArgumentError } from '@sluice/common';

/** Default broker address of a client that names none. */
export const DEFAULT_SERVICE_URL = 'localhost:6650';

/**
 * Turn `host:port` or `sluice://host:port` into the `host:port` gRPC dials.
 * A missing port means 6650, the broker's default.
 */
export function parseServiceUrl(url: string): string {
  const raw = url.trim();
  const rest = raw.startsWith('sluice://') ? raw.slice('sluice://'.length) : raw;
  if (rest.includes('://')) {
    throw new InvalidArgumentError(
      `service URL '${url}' has an unknown scheme; use host:port or sluice://host:port`,
    );
  }
  const address = rest.replace(/\/+$/, '');
  if (address === '' || address.includes('/')) {
    throw new InvalidArgumentError(`service URL '${url}' is malformed; use host:port or sluice://host:port`);
  }
  const bracketed = address.startsWith('[');
  const hasPort = bracketed ? /\]:\d+$/.test(address) : /:\d+$/.test(address);
  if (!hasPort && !bracketed && address.includes(':')) {
    throw new InvalidArgumentError(`service URL '${url}' has a malformed port; use host:port`);
  }
  return hasPort ? address : `${address}:6650`;
}
