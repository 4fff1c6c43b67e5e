import type { LedgerId, Logger } from '@sluice/common';
import type { LedgerClient } from '@sluice/ledger';
import type { MetadataStore } from '@sluice/metadata';
import { LedgerListStore } from './ledger-list.js';
import { CUSTOM_LOG, CUSTOM_ROLE, cursorPrefix } from './log-keys.js';

const LEDGERS_PREFIX = 'ledgers/';

/** Default age below which the sweeper leaves a ledger alone. */
export const DEFAULT_SWEEP_GRACE_MS = 10 * 60 * 1000;

export interface SweepResult {
  /** Ledgers examined that belong to some managed log. */
  examined: number;
  deleted: LedgerId[];
}

/**
 * Deletes ledgers whose `custom` says they belong to a managed log that no
 * longer references them: a ledger created just before a crash (before the
 * list CAS), a cursor ledger superseded but not yet deleted, the ledgers of
 * a deleted log. Young ledgers are skipped (`graceMs`): a ledger exists a
 * moment before the list or snapshot that references it.
 */
export async function sweepOrphanLedgers(
  metadata: MetadataStore,
  ledgers: LedgerClient,
  opts: { graceMs: number; now: number; logger?: Logger; onlyLog?: string },
): Promise<SweepResult> {
  const keys = await metadata.listAll(LEDGERS_PREFIX, { keysOnly: true });
  const referenced = new Map<string, Set<LedgerId>>();
  const result: SweepResult = { examined: 0, deleted: [] };
  for (const { key } of keys) {
    const id = Number(key.slice(key.lastIndexOf('/') + 1));
    if (!Number.isSafeInteger(id)) continue;
    const md = await ledgers.getLedgerMetadata(id);
    const log = md?.custom?.[CUSTOM_LOG];
    if (!md || !log || (opts.onlyLog !== undefined && log !== opts.onlyLog)) continue;
    result.examined++;
    if (opts.now - md.ctime < opts.graceMs) continue;
    let refs = referenced.get(log);
    if (!refs) {
      refs = await referencedLedgers(metadata, log);
      referenced.set(log, refs);
    }
    if (refs.has(id)) continue;
    // Read again right before deleting: the list read above may be older than
    // a write that has since recorded this ledger (a long sweep, or a writer
    // reusing a ledger a failed rollover created).
    refs = await referencedLedgers(metadata, log);
    referenced.set(log, refs);
    if (refs.has(id)) continue;
    opts.logger?.info({ log, ledgerId: id, role: md.custom[CUSTOM_ROLE] }, 'deleting orphan ledger');
    await ledgers.deleteLedger(id);
    result.deleted.push(id);
  }
  return result;
}

/** Ledgers a log still needs on bookies: its list (minus deleted bookie copies) and its cursors' ledgers. */
export async function referencedLedgers(metadata: MetadataStore, log: string): Promise<Set<LedgerId>> {
  const refs = new Set<LedgerId>();
  const current = await new LedgerListStore(metadata, log).read();
  for (const rec of current?.list.ledgers ?? []) if (!rec.bookieDeleted) refs.add(rec.ledgerId);
  for (const snap of await metadata.listAll(cursorPrefix(log))) {
    try {
      const parsed = JSON.parse(snap.value.toString('utf8')) as { cursorLedgerId?: number };
      if (typeof parsed.cursorLedgerId === 'number') refs.add(parsed.cursorLedgerId);
    } catch {
      // An unreadable snapshot keeps nothing alive; the cursor itself reports it on open.
    }
  }
  return refs;
}
