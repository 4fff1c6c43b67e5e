import { BadVersionError, CorruptDataError, type LedgerId } from '@sluice/common';
import type { MetadataStore } from '@sluice/metadata';
import { logKey } from './log-keys.js';

/** One ledger of a log as recorded in `logs/<name>`. */
export interface LedgerRecord {
  ledgerId: LedgerId;
  /** Entries of a sealed ledger; for the open one, what was known at the last list write. */
  entries: number;
  size: number;
  ctime: number;
  /** Set once the ledger is closed and its entry count final. */
  sealed: boolean;
  /** Epoch ms at which the ledger was sealed. */
  sealedAt?: number;
  /**
   * Offload of this ledger. `pending` is written before the upload starts so
   * that a crashed attempt's objects can be found and deleted; readers use
   * only `complete` offloads, so a partial object is never referenced.
   */
  offload?: { uuid: string; state: 'pending' | 'complete'; completedAt?: number };
  /** The bookie copy was deleted (after the offload lag); reads go to the offloader. */
  bookieDeleted?: boolean;
}

/** Work left by a crash or in progress: ledgers/objects to delete, retried until done. */
export interface TrashRecord {
  ledgerId: LedgerId;
  /** Delete the bookie ledger too (false once already gone). */
  bookie: boolean;
  /** Offload objects to delete. */
  offloadUuids: string[];
}

export interface LedgerList {
  format: 1;
  ledgers: LedgerRecord[];
  trash: TrashRecord[];
}

export interface VersionedList {
  list: LedgerList;
  version: number;
}

/**
 * The highest ledger id the list names, trash included (0 for none). A new
 * ledger of the log must have a higher one: positions compare by ledger id
 * first, and a cursor may still point into a ledger that went to the trash.
 */
export function newestLedgerId(list: LedgerList): LedgerId {
  let max = 0;
  for (const l of list.ledgers) if (l.ledgerId > max) max = l.ledgerId;
  for (const t of list.trash) if (t.ledgerId > max) max = t.ledgerId;
  return max;
}

export function emptyList(): LedgerList {
  return { format: 1, ledgers: [], trash: [] };
}

export function decodeList(name: string, value: Buffer): LedgerList {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString('utf8'));
  } catch (err) {
    throw new CorruptDataError(`ledger list of log '${name}' is not valid JSON; restore logs/${name}`, {
      cause: err,
    });
  }
  const list = parsed as LedgerList;
  if (list?.format !== 1 || !Array.isArray(list.ledgers)) {
    throw new CorruptDataError(`ledger list of log '${name}' has an unknown format; restore logs/${name}`);
  }
  list.trash ??= [];
  return list;
}

export function encodeList(list: LedgerList): Buffer {
  return Buffer.from(JSON.stringify(list));
}

/** The ledger list of one log in metadata; every change is a CAS on its version. */
export class LedgerListStore {
  constructor(
    private readonly metadata: MetadataStore,
    readonly name: string,
  ) {}

  async read(): Promise<VersionedList | undefined> {
    const v = await this.metadata.get(logKey(this.name));
    if (!v) return undefined;
    return { list: decodeList(this.name, v.value), version: v.version };
  }

  /** Read or create the list. */
  async readOrCreate(): Promise<VersionedList> {
    for (;;) {
      const cur = await this.read();
      if (cur) return cur;
      const list = emptyList();
      try {
        const version = await this.metadata.put(logKey(this.name), encodeList(list), { createOnly: true });
        return { list, version };
      } catch (err) {
        if ((err as { code?: string }).code !== 'ALREADY_EXISTS') throw err;
      }
    }
  }

  /** CAS write; BadVersionError means another writer changed the list. */
  async write(list: LedgerList, expectedVersion: number): Promise<number> {
    return casPut(this.metadata, logKey(this.name), encodeList(list), expectedVersion);
  }

  async remove(expectedVersion?: number): Promise<void> {
    await this.metadata.delete(
      logKey(this.name),
      expectedVersion === undefined ? undefined : { expectedVersion },
    );
  }
}

/** Final size of a ledger as its close or recovery recorded it in the ledger metadata. */
export interface SealedSize {
  entries: number;
  size: number;
}

/**
 * Record a closed ledger in `list`: sealed with its final size, or, when it
 * holds nothing, moved to the trash. Only ever called with the size from
 * CLOSED ledger metadata, never with a writer's own count: a reader trusts a
 * sealed record's `entries` and reads closed ledgers without recovering them.
 */
export function sealOrTrash(list: LedgerList, ledgerId: LedgerId, sealed: SealedSize, now: number): void {
  const i = list.ledgers.findIndex((l) => l.ledgerId === ledgerId);
  if (i < 0) return;
  if (sealed.entries === 0) {
    list.ledgers.splice(i, 1);
    list.trash.push({ ledgerId, bookie: true, offloadUuids: [] });
  } else {
    Object.assign(list.ledgers[i]!, {
      entries: sealed.entries,
      size: sealed.size,
      sealed: true,
      sealedAt: now,
    });
  }
}

/**
 * Take ledgers that never held an entry (ledgers a failed rollover created)
 * out of `list`, where a write whose answer was lost may have put them, and
 * into the trash, which deletes them whether or not they were listed.
 */
export function trashUnused(list: LedgerList, ledgerIds: readonly LedgerId[]): void {
  for (const ledgerId of ledgerIds) {
    list.ledgers = list.ledgers.filter((l) => l.ledgerId !== ledgerId);
    if (!list.trash.some((t) => t.ledgerId === ledgerId && t.bookie)) {
      list.trash.push({ ledgerId, bookie: true, offloadUuids: [] });
    }
  }
}

/**
 * A CAS put that tells "not written" from "written, but the answer was
 * lost": a put can commit and still fail (a timeout after the commit; a
 * retry of it then sees BadVersion against its own write). On any failure
 * the key is read back; holding exactly our value means our write landed.
 * Thrown errors carry `outcomeUnknown: true` when even the read failed:
 * the caller must not assume the write is absent (nor present).
 */
export async function casPut(
  metadata: MetadataStore,
  key: string,
  value: Buffer,
  expectedVersion: number,
): Promise<number> {
  try {
    return await metadata.put(key, value, { expectedVersion });
  } catch (err) {
    let current: Awaited<ReturnType<MetadataStore['get']>>;
    try {
      current = await metadata.get(key);
    } catch {
      throw Object.assign(err as Error, { outcomeUnknown: true });
    }
    if (current?.value.equals(value)) return current.version;
    throw err;
  }
}

export function isOutcomeUnknown(err: unknown): boolean {
  return (err as { outcomeUnknown?: boolean })?.outcomeUnknown === true;
}

export function isBadVersion(err: unknown): boolean {
  return err instanceof BadVersionError || (err as { code?: string })?.code === 'BAD_VERSION';
}
