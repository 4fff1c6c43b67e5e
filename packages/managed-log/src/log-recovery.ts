import { CorruptDataError, type LedgerId, NotFoundError } from '@sluice/common';
import type { LedgerClient, LedgerWriter } from '@sluice/ledger';
import type { ManagedLogConfig } from './api.js';
import {
  isBadVersion,
  isOutcomeUnknown,
  type LedgerListStore,
  newestLedgerId,
  type SealedSize,
  sealOrTrash,
  type VersionedList,
} from './ledger-list.js';
import { ledgerCustom } from './log-keys.js';

const MAX_OPEN_ATTEMPTS = 5;

/**
 * Take a log over: recover (fence and close) every ledger the list still
 * shows unsealed, so its previous writer can never append again, record
 * their final lengths, and add a fresh ledger — all in one CAS. Losing the
 * CAS means another opener raced us; start over against its list.
 */
export async function takeOverLog(
  store: LedgerListStore,
  ledgers: LedgerClient,
  config: ManagedLogConfig,
  now: () => number,
): Promise<{ current: VersionedList; writer: LedgerWriter }> {
  let lastErr: unknown;
  for (let attempt = 0; attempt < MAX_OPEN_ATTEMPTS; attempt++) {
    const { list, version } = await store.readOrCreate();
    for (const rec of list.ledgers.filter((l) => !l.sealed)) {
      // An unsealed record's `entries` is 0 unless its writer found the
      // ledger gone after acknowledging entries and recorded how many.
      sealOrTrash(
        list,
        rec.ledgerId,
        await recoverLedger(ledgers, rec.ledgerId, rec.entries, store.name),
        now(),
      );
    }
    const writer = await ledgers.createLedger({
      ensembleSize: config.ensembleSize,
      writeQuorum: config.writeQuorum,
      ackQuorum: config.ackQuorum,
      custom: ledgerCustom(store.name, 'data'),
      idAbove: newestLedgerId(list),
    });
    list.ledgers.push({
      ledgerId: writer.ledgerId,
      entries: 0,
      size: 0,
      ctime: writer.metadata.ctime,
      sealed: false,
    });
    try {
      const v = await store.write(list, version);
      return { current: { list, version: v }, writer };
    } catch (err) {
      await writer.close().catch(() => undefined);
      // A write whose outcome is unknown may have listed the ledger: deleting
      // it would leave the list naming a ledger without metadata. The orphan
      // sweeper deletes it later if the write did not land.
      if (!isOutcomeUnknown(err)) await ledgers.deleteLedger(writer.ledgerId).catch(() => undefined);
      if (!isBadVersion(err)) throw err;
      lastErr = err;
    }
  }
  throw lastErr;
}

/**
 * Close our own ledger and return its final size. When the close fails
 * (metadata store unreachable, bookies failing) the ledger is recovered
 * instead, which fences and closes it from its bookies: the list may call a
 * ledger sealed only once its metadata is CLOSED, since readers bound a
 * sealed ledger by that record and open it without recovery. Throws when
 * neither works; the caller must then leave the ledger unsealed.
 * `acknowledged` is how many entries the writer had acknowledged: when it is
 * not 0 a ledger whose metadata is gone is a CorruptDataError, never empty.
 */
export async function sealLedger(
  ledgers: LedgerClient,
  writer: LedgerWriter,
  acknowledged: number,
  logName: string,
  onCloseFailed: (err: unknown) => void,
): Promise<SealedSize> {
  try {
    const m = await writer.close();
    return { entries: m.lastEntryId + 1, size: m.length };
  } catch (err) {
    onCloseFailed(err);
    return recoverLedger(ledgers, writer.ledgerId, acknowledged, logName);
  }
}

/**
 * Fence and close a ledger from its bookies. A ledger whose metadata is gone
 * counts as empty only when nobody is known to have acknowledged an entry in
 * it (`acknowledged` 0). For a listed, unsealed ledger of another owner that
 * means it was never written, because nothing deletes such a ledger while a
 * writer may append to it: trim and bookie-copy deletion take only sealed
 * ledgers; the sweeper only unlisted ones, and it re-reads the list right
 * before deleting; a writer appends only to a ledger the list records, and
 * reuses one a failed rollover created only after checking it still exists
 * while it is too young to be swept. Such a record comes from a list write
 * whose answer was lost, naming a ledger its creator then deleted as unused
 * (which takeovers did before they checked for that). A writer that finds its
 * own ledger gone after acknowledging entries fails instead, and records the
 * count in the list (`acknowledged` here), so that the next owner refuses too
 * rather than dropping them.
 */
async function recoverLedger(
  ledgers: LedgerClient,
  ledgerId: LedgerId,
  acknowledged: number,
  logName: string,
): Promise<SealedSize> {
  try {
    const reader = await ledgers.openLedger(ledgerId, { recover: true });
    const result = { entries: reader.metadata.lastEntryId + 1, size: reader.metadata.length };
    await reader.close().catch(() => undefined);
    return result;
  } catch (err) {
    if (!(err instanceof NotFoundError || (err as { code?: string })?.code === 'NOT_FOUND')) throw err;
    if (acknowledged > 0) throw ledgerLost(logName, ledgerId, acknowledged, err);
    return { entries: 0, size: 0 };
  }
}

/** A ledger holding acknowledged entries lost its metadata: its entries are unreadable. */
export function ledgerLost(logName: string, ledgerId: LedgerId, acknowledged: number, cause: unknown) {
  return new CorruptDataError(
    `ledger ${ledgerId} of managed log '${logName}' held ${acknowledged} acknowledged entries but its metadata ` +
      'is gone (deleted by an orphan sweep or by hand); those entries cannot be read. The log takes no appends ' +
      `until an operator restores ledger ${ledgerId} or removes it from logs/${logName} to accept the loss`,
    { cause, details: { ledgerId: String(ledgerId), acknowledgedEntries: String(acknowledged) } },
  );
}

/** True for the error `ledgerLost` makes. */
export function isLedgerLost(err: unknown): boolean {
  return err instanceof CorruptDataError && err.details.acknowledgedEntries !== undefined;
}
