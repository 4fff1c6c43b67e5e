import { comparePositions, type Position } from '@sluice/common';
import type { Cursor, ManagedLog } from '@sluice/managed-log';
import { envelopePublishTime } from './entry-envelope.js';
import { bytesAfter, previousPosition } from './log-positions.js';

export type BacklogQuotaPolicyName = 'producer_hold' | 'producer_exception' | 'consumer_backlog_eviction';

/** The proto enum name of a backlog quota policy as the broker acts on it. */
export function backlogQuotaPolicy(name: string): BacklogQuotaPolicyName {
  if (name === 'BACKLOG_QUOTA_POLICY_PRODUCER_EXCEPTION') return 'producer_exception';
  if (name === 'BACKLOG_QUOTA_POLICY_CONSUMER_BACKLOG_EVICTION') return 'consumer_backlog_eviction';
  return 'producer_hold';
}

/**
 * Estimated unacknowledged bytes of a cursor: the bytes stored after its
 * mark-delete, scaled by the share of those entries not individually
 * acknowledged (ledger sizes are exact; the split within a ledger is pro rata).
 */
export function cursorBacklogBytes(log: ManagedLog, cursor: Cursor): number {
  const after = log.entriesAfter(cursor.markDelete);
  if (after <= 0) return 0;
  return bytesAfter(log, cursor.markDelete) * Math.min(1, cursor.backlog() / after);
}

/**
 * The newest position to evict so that at most `limitBytes` stay after it
 * (walking ledgers from the newest), or undefined when the whole log fits.
 */
export function evictionPoint(log: ManagedLog, limitBytes: number): Position | undefined {
  const ledgers = log.stats().ledgers;
  let kept = 0;
  for (let i = ledgers.length - 1; i >= 0; i--) {
    const l = ledgers[i]!;
    if (l.entries === 0) continue;
    if (kept + l.size <= limitBytes) {
      kept += l.size;
      continue;
    }
    const perEntry = l.size / l.entries;
    const keep = Math.max(0, Math.floor((limitBytes - kept) / perEntry));
    return previousPosition(log, { ledgerId: l.ledgerId, entryId: l.entries - keep });
  }
  return undefined;
}

/** The newest entry published before `now - ttlMs` (binary search on envelope publish times), if any. */
export async function ttlExpiryPoint(
  log: ManagedLog,
  ttlMs: number,
  now: number,
): Promise<Position | undefined> {
  const first = log.firstPosition();
  if (!first) return undefined;
  const p = await log.seekByTime(now - ttlMs, envelopePublishTime);
  if (comparePositions(p, first) <= 0) return undefined;
  return previousPosition(log, p);
}
