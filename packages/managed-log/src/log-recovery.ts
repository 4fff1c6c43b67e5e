import { type LedgerId, NotFoundError } from '@sluice/common';
import type { LedgerClient, LedgerWriter } from '@sluice/ledger';
import type { ManagedLogConfig } from './api.js';
import {
  isBadVersion,
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
      sealOrTrash(list, rec.ledgerId, await recoverLedger(ledgers, rec.ledgerId), now());
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
      await ledgers.deleteLedger(writer.ledgerId).catch(() => undefined);
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
 */
export async function sealLedger(
  ledgers: LedgerClient,
  writer: LedgerWriter,
  onCloseFailed: (err: unknown) => void,
): Promise<SealedSize> {
  try {
    const m = await writer.close();
    return { entries: m.lastEntryId + 1, size: m.length };
  } catch (err) {
    onCloseFailed(err);
    return recoverLedger(ledgers, writer.ledgerId);
  }
}

async function recoverLedger(ledgers: LedgerClient, ledgerId: LedgerId): Promise<SealedSize> {
  try {
    const reader = await ledgers.openLedger(ledgerId, { recover: true });
    const result = { entries: reader.metadata.lastEntryId + 1, size: reader.metadata.length };
    await reader.close().catch(() => undefined);
    return result;
  } catch (err) {
    // Created but its metadata is gone (deleted by a sweeper): it held nothing acknowledged.
    if (err instanceof NotFoundError || (err as { code?: string })?.code === 'NOT_FOUND') {
      return { entries: 0, size: 0 };
    }
    throw err;
  }
}
