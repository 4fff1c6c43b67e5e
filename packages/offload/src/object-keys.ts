/**
 * Object names: `<prefix>/ledger-<id>/<uuid>.data` and `.index`. Every offload
 * attempt gets a fresh uuid, so a crashed attempt never collides with its
 * retry and the log can tell a completed offload from debris by uuid.
 */
import { InvalidArgumentError, type LedgerId } from '@sluice/common';

const UUID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;
const KEY_PATTERN = /(?:^|\/)ledger-(\d+)\/([A-Za-z0-9][A-Za-z0-9-]{0,63})\.(data|index)$/;

export interface OffloadObjectKeys {
  data: string;
  index: string;
}

export function assertLedgerId(ledgerId: LedgerId): void {
  if (!Number.isSafeInteger(ledgerId) || ledgerId < 0) {
    throw new InvalidArgumentError(`ledger id ${ledgerId} is invalid; it must be a non-negative integer`);
  }
}

export function assertUuid(uuid: string): void {
  if (!UUID_PATTERN.test(uuid)) {
    throw new InvalidArgumentError(
      `offload uuid '${uuid}' is invalid; use 1-64 letters, digits or '-' (e.g. a random UUID)`,
    );
  }
}

/** `prefix` without leading/trailing slashes ('' for the root). */
export function normalizePrefix(prefix: string): string {
  return prefix.replace(/^\/+|\/+$/g, '');
}

export function ledgerPrefix(prefix: string, ledgerId?: LedgerId): string {
  const base = prefix === '' ? '' : `${prefix}/`;
  return ledgerId === undefined ? base : `${base}ledger-${ledgerId}/`;
}

export function offloadObjectKeys(prefix: string, ledgerId: LedgerId, uuid: string): OffloadObjectKeys {
  assertLedgerId(ledgerId);
  assertUuid(uuid);
  const base = `${ledgerPrefix(prefix, ledgerId)}${uuid}`;
  return { data: `${base}.data`, index: `${base}.index` };
}

export function parseObjectKey(
  key: string,
): { ledgerId: LedgerId; uuid: string; kind: 'data' | 'index' } | undefined {
  const m = KEY_PATTERN.exec(key);
  if (!m) return undefined;
  return { ledgerId: Number(m[1]), uuid: m[2]!, kind: m[3] as 'data' | 'index' };
}
