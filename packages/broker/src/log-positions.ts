import type { Position } from '@sluice/common';
import type { ManagedLog } from '@sluice/managed-log';

/**
 * Position arithmetic over a managed log's ledger list (entry ids are dense
 * from 0 within a ledger). Used off the hot path only: it walks `stats()`.
 */
export function previousPosition(log: ManagedLog, p: Position): Position {
  if (p.entryId > 0) return { ledgerId: p.ledgerId, entryId: p.entryId - 1 };
  const ledgers = log.stats().ledgers;
  for (let i = ledgers.length - 1; i >= 0; i--) {
    const l = ledgers[i]!;
    if (l.ledgerId < p.ledgerId && l.entries > 0) return { ledgerId: l.ledgerId, entryId: l.entries - 1 };
  }
  return { ledgerId: p.ledgerId, entryId: -1 };
}

/** The position the next appended entry will take (as far as the ledger list knows). */
export function endPosition(log: ManagedLog): Position {
  const ledgers = log.stats().ledgers;
  const last = ledgers[ledgers.length - 1];
  if (last) return { ledgerId: last.ledgerId, entryId: last.entries };
  const lp = log.lastPosition();
  return lp ? { ledgerId: lp.ledgerId, entryId: lp.entryId + 1 } : { ledgerId: 0, entryId: 0 };
}

/**
 * Estimated bytes stored after `p` (exclusive): whole ledgers after it plus
 * the share of its own ledger, pro rata by entry count.
 */
export function bytesAfter(log: ManagedLog, p: Position): number {
  let bytes = 0;
  for (const l of log.stats().ledgers) {
    if (l.ledgerId > p.ledgerId) bytes += l.size;
    else if (l.ledgerId === p.ledgerId && l.entries > 0) {
      const after = Math.max(0, l.entries - (p.entryId + 1));
      bytes += (l.size * after) / l.entries;
    }
  }
  return bytes;
}
