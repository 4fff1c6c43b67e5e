import { mkdir, open, readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as setImmediatePromise } from 'node:timers/promises';
import { crc32c, FailedPreconditionError, fsyncDir, type Logger, writeFileAtomic } from '@sluice/common';
import type { EntryLocation } from './entry-log.js';
import { writeInt64LE } from './int64.js';
import { LocationTable } from './location-table.js';

/**
 * What a bookie knows of one ledger: its fence, the highest LAC seen, and
 * where each entry it holds lives in the entry logs.
 */
export class LedgerState {
  fenced = false;
  lac = -1;
  lastEntryId = -1;
  readonly entries = new LocationTable();
  /**
   * Index records of the locations set since the last persist, encoded as
   * each was set (by the flusher, spread over the adds), so that a persist
   * only writes them: encoding a checkpoint's tens of thousands of records
   * at once held the event loop for tens of milliseconds.
   */
  pending = new PendingRecords();
  /** Records in the index file (live or superseded), to know when to rewrite it. */
  fileRecords = 0;
  /**
   * Leading records of the index file that completed persists wrote and
   * fsynced; recorded in the checkpoint so that a load can tell a torn
   * append (after them: its entries are still in the journal) from a
   * damaged record the journal no longer covers.
   */
  durableRecords = 0;
  /**
   * Set when an index record the journal no longer covers is unreadable: an
   * acknowledged entry may be missing from `entries`, so a missing id must
   * be answered as corrupt, never as "no such entry".
   */
  suspect: string | undefined;

  constructor(
    readonly ledgerId: number,
    readonly firstSeen: number,
  ) {}

  noteEntry(entryId: number, lac: number): void {
    if (entryId > this.lastEntryId) this.lastEntryId = entryId;
    if (lac > this.lac) this.lac = lac;
  }
}

/**
 * Index file of a ledger: 32-byte records, each
 *   u64 entryId | u32 logId | u64 offset | u32 length | u32 crc32c(bytes 0..24) | u32 0
 * appended at checkpoints (and between them once a busy ledger has many
 * waiting, see `persistFull`); a later record of an entry supersedes an earlier
 * one (compaction moves entries). A bad CRC past the records the last
 * checkpoint counted is a torn append and is skipped: its entries are still
 * in the journal, which is not trimmed until the index is durable. A bad CRC
 * before that is damage: the ledger is marked suspect.
 */
const INDEX_RECORD_BYTES = 32;

/** One record is built here and copied out: no view or object per record. */
const scratch = Buffer.alloc(INDEX_RECORD_BYTES);
const scratchHead = scratch.subarray(0, 24);

function encodeIndexRecord(
  out: Buffer,
  at: number,
  entryId: number,
  logId: number,
  offset: number,
  length: number,
): void {
  writeInt64LE(scratch, entryId, 0);
  scratch.writeUInt32LE(logId, 8);
  writeInt64LE(scratch, offset, 12);
  scratch.writeUInt32LE(length, 20);
  scratch.writeUInt32LE(crc32c(scratchHead), 24);
  scratch.copy(out, at);
}

const PENDING_FIRST_CHUNK_RECORDS = 32;
const PENDING_MAX_CHUNK_RECORDS = 2048;

/**
 * Encoded index records waiting for a persist, in chunks that start small
 * (a bookie holds one of these per ledger) and double up to 64 KiB.
 */
export class PendingRecords {
  private chunks: Buffer[] = [];
  private used = 0;
  /** Records held. */
  count = 0;

  add(entryId: number, loc: EntryLocation): void {
    let last = this.chunks.at(-1);
    if (!last || this.used === last.length) {
      const records = last
        ? Math.min(PENDING_MAX_CHUNK_RECORDS, (last.length / INDEX_RECORD_BYTES) * 2)
        : PENDING_FIRST_CHUNK_RECORDS;
      last = Buffer.allocUnsafe(records * INDEX_RECORD_BYTES);
      this.chunks.push(last);
      this.used = 0;
    }
    encodeIndexRecord(last, this.used, entryId, loc.logId, loc.offset, loc.length);
    this.used += INDEX_RECORD_BYTES;
    this.count++;
  }

  /** The records as buffers to write, in the order they were added. */
  buffers(): Buffer[] {
    const out = this.chunks.slice(0, -1);
    const last = this.chunks.at(-1);
    if (last) out.push(last.subarray(0, this.used));
    return out;
  }
}

/** Whether a ledger's index file, with its pending records, would hold mostly superseded records (it is then rewritten). */
function mostlySuperseded(l: LedgerState): boolean {
  return l.fileRecords + l.pending.count > 2 * l.entries.size + 1024;
}

/** Index records encoded per event-loop turn when `persist` rewrites an index file. */
const ENCODE_SLICE_RECORDS = 4096;

const INDEX_RE = /^(\d+)\.idx$/;
const CHECKPOINT_VERSION = 2;

/** Durable state of the ledger dir besides the index files: the checkpoint. */
export interface CheckpointFile {
  /** Format of everything in the ledger dir and journal: 2 since entries carry their ledger length. */
  version: typeof CHECKPOINT_VERSION;
  /** Journal position up to which everything is in the fsynced entry logs and index. */
  journal: { fileId: number; offset: number };
  /** [ledgerId, fenced (0/1), lac, firstSeen, durable index records (absent in older files)] */
  ledgers: [number, number, number, number, number?][];
}

/**
 * The persisted (ledgerId, entryId) → location index plus per-ledger state,
 * held in memory and made durable at checkpoints.
 */
export class LedgerIndex {
  readonly ledgers = new Map<number, LedgerState>();
  /** Bytes of each entry log still referenced by the index. */
  readonly liveBytes = new Map<number, number>();
  private readonly indexDir: string;
  private readonly checkpointPath: string;

  /** Ledgers whose pending records reached `spreadRecords` since their last persist. */
  private readonly full = new Set<LedgerState>();
  /** Called when a ledger's pending records reach `spreadRecords` (the owner schedules `persistFull`). */
  onFull: (() => void) | undefined;

  constructor(
    dir: string,
    private readonly logger: Logger,
    /** A ledger holding this many pending records may be persisted ahead of the checkpoint. */
    private readonly spreadRecords = Number.MAX_SAFE_INTEGER,
  ) {
    this.indexDir = join(dir, 'index');
    this.checkpointPath = join(dir, 'checkpoint.json');
  }

  /** Load the checkpoint and every index file; returns the journal position to replay from. */
  async load(now: number): Promise<{ fileId: number; offset: number }> {
    await mkdir(this.indexDir, { recursive: true });
    let cp: CheckpointFile | undefined;
    try {
      cp = JSON.parse(await readFile(this.checkpointPath, 'utf8')) as CheckpointFile;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new Error(`checkpoint file ${this.checkpointPath} is unreadable: ${(err as Error).message}`);
      }
    }
    if (cp && cp.version !== CHECKPOINT_VERSION) {
      throw new FailedPreconditionError(
        `ledger dir ${join(this.indexDir, '..')} was written in storage format ${cp.version}, this build reads format ${CHECKPOINT_VERSION} only; ` +
          'start the bookie build that wrote it, or wipe the data dir so the bookie joins as a new one',
      );
    }
    const checkpointed = new Map<number, number | undefined>();
    for (const [id, fenced, lac, firstSeen, durable] of cp?.ledgers ?? []) {
      const l = new LedgerState(id, firstSeen);
      l.fenced = fenced === 1;
      l.lac = lac;
      this.ledgers.set(id, l);
      checkpointed.set(id, durable);
    }
    for (const name of await readdir(this.indexDir)) {
      const m = INDEX_RE.exec(name);
      if (!m) continue;
      const id = Number(m[1]);
      const l = this.ledgers.get(id) ?? new LedgerState(id, now);
      this.ledgers.set(id, l);
      const buf = await readFile(join(this.indexDir, name));
      const records = Math.floor(buf.length / INDEX_RECORD_BYTES);
      const badAt: number[] = [];
      for (let i = 0; i < records; i++) {
        const at = i * INDEX_RECORD_BYTES;
        if (crc32c(buf.subarray(at, at + 24)) !== buf.readUInt32LE(at + 24)) badAt.push(i);
      }
      const badSet = new Set(badAt);
      // Records a completed checkpoint covered are trusted: the journal
      // before it is gone. Without a recorded count (an older checkpoint, or
      // a ledger the last checkpoint did not know) only the trailing run of
      // bad records can be a torn append.
      let tornFrom = checkpointed.get(id);
      if (tornFrom === undefined) {
        tornFrom = checkpointed.has(id) ? records : 0;
        while (tornFrom > 0 && badSet.has(tornFrom - 1)) tornFrom--;
      }
      const damaged = badAt.filter((i) => i < tornFrom!);
      if (damaged.length > 0) {
        l.suspect = `${damaged.length} index record(s) of ledger ${id} failed their CRC (first at record ${damaged[0]})`;
        this.logger.error(
          { ledgerId: id, damaged: damaged.length, first: damaged[0] },
          'index records covered by a checkpoint are damaged; missing entries of this ledger are reported corrupt',
        );
      }
      const bad = badAt.length;
      for (let i = 0; i < records; i++) {
        const at = i * INDEX_RECORD_BYTES;
        if (badSet.has(i)) continue;
        const entryId = Number(buf.readBigUInt64LE(at));
        const loc = {
          logId: buf.readUInt32LE(at + 8),
          offset: Number(buf.readBigUInt64LE(at + 12)),
          length: buf.readUInt32LE(at + 20),
        };
        this.setLocation(l, entryId, loc, false);
        l.fileRecords++;
      }
      if (bad > damaged.length) {
        this.logger.warn({ ledgerId: id, torn: bad - damaged.length }, 'skipped torn index records');
      }
      l.durableRecords = Math.min(records, badAt.find((i) => i >= tornFrom!) ?? records);
      // Torn records are rewritten away at the next persist.
      if (bad > 0 || buf.length % INDEX_RECORD_BYTES !== 0) l.fileRecords = Number.MAX_SAFE_INTEGER;
    }
    return cp?.journal ?? { fileId: 0, offset: 0 };
  }

  get(ledgerId: number): LedgerState | undefined {
    return this.ledgers.get(ledgerId);
  }

  getOrCreate(ledgerId: number, now: number): LedgerState {
    let l = this.ledgers.get(ledgerId);
    if (!l) {
      l = new LedgerState(ledgerId, now);
      this.ledgers.set(ledgerId, l);
    }
    return l;
  }

  setLocation(l: LedgerState, entryId: number, loc: EntryLocation, dirty = true): void {
    const old = l.entries.set(entryId, loc);
    if (old) this.liveBytes.set(old.logId, (this.liveBytes.get(old.logId) ?? 0) - old.length);
    this.liveBytes.set(loc.logId, (this.liveBytes.get(loc.logId) ?? 0) + loc.length);
    if (entryId > l.lastEntryId) l.lastEntryId = entryId;
    if (!dirty) return;
    l.pending.add(entryId, loc);
    if (l.pending.count === this.spreadRecords) {
      this.full.add(l);
      this.onFull?.();
    }
  }

  /**
   * fsync every index change made so far. Run only after the entry logs they
   * point into are synced, and on the storage's serial chain: it yields
   * between slices, and nothing else may change the index meanwhile.
   */
  async persist(): Promise<void> {
    let created = false;
    for (const l of this.ledgers.values()) {
      if (l.pending.count === 0) continue;
      if (mostlySuperseded(l)) await this.rewrite(l);
      else created = (await this.append(l)) || created;
    }
    this.full.clear();
    if (created) await fsyncDir(this.indexDir);
  }

  /**
   * Append and fsync the pending records of the ledgers that hold
   * `spreadRecords` or more, ahead of the checkpoint, so that a busy ledger's
   * records reach the disk in slices spread over the interval instead of all
   * at once at the checkpoint, where one fdatasync of megabytes held up the
   * journal's. Records past the count the last checkpoint recorded are
   * trusted on load only when their CRC holds (a torn one is skipped: its
   * entry is still in the journal), so this is safe at any time under the
   * same rule as `persist`: the entry logs they point into are synced first.
   * Only appends: a file due for a rewrite waits for the checkpoint, since a
   * rewritten file may hold fewer records than the last checkpoint counted.
   */
  async persistFull(): Promise<void> {
    const full = [...this.full];
    this.full.clear();
    let created = false;
    for (const l of full) {
      if (this.ledgers.get(l.ledgerId) !== l || l.pending.count < this.spreadRecords) continue;
      if (mostlySuperseded(l)) continue;
      created = (await this.append(l)) || created;
    }
    if (created) await fsyncDir(this.indexDir);
  }

  /** Rewrite a ledger's file from its live locations (it holds mostly superseded records). */
  private async rewrite(l: LedgerState): Promise<void> {
    l.pending = new PendingRecords();
    const ids = l.entries.ids();
    const buf = Buffer.allocUnsafe(ids.length * INDEX_RECORD_BYTES);
    for (let i = 0; i < ids.length; i++) {
      const loc = l.entries.get(ids[i]!)!;
      encodeIndexRecord(buf, i * INDEX_RECORD_BYTES, ids[i]!, loc.logId, loc.offset, loc.length);
      // A large ledger is hundreds of thousands of records: encode them
      // in slices so that a rewrite never stalls adds on this event loop.
      if ((i + 1) % ENCODE_SLICE_RECORDS === 0) await setImmediatePromise();
    }
    await writeFileAtomic(join(this.indexDir, `${l.ledgerId}.idx`), buf);
    l.fileRecords = ids.length;
    l.durableRecords = ids.length;
  }

  /**
   * Append a ledger's pending records to its file and fdatasync it; returns
   * whether the file was new (its directory entry then needs an fsync). An
   * id set twice since the last persist has two records: the later one
   * supersedes on load.
   */
  private async append(l: LedgerState): Promise<boolean> {
    const pending = l.pending;
    l.pending = new PendingRecords();
    const fh = await open(join(this.indexDir, `${l.ledgerId}.idx`), 'a');
    let created = false;
    try {
      created = (await fh.stat()).size === 0;
      const bytes = pending.count * INDEX_RECORD_BYTES;
      const { bytesWritten } = await fh.writev(pending.buffers());
      if (bytesWritten !== bytes) {
        throw Object.assign(new Error(`short index write: ${bytesWritten} of ${bytes} bytes (disk full?)`), {
          code: 'ENOSPC',
        });
      }
      await fh.datasync();
    } finally {
      await fh.close();
    }
    l.fileRecords += pending.count;
    l.durableRecords = l.fileRecords;
    return created;
  }

  async writeCheckpoint(journal: { fileId: number; offset: number }): Promise<void> {
    const cp: CheckpointFile = {
      version: CHECKPOINT_VERSION,
      journal,
      ledgers: [...this.ledgers.values()].map((l) => [
        l.ledgerId,
        l.fenced ? 1 : 0,
        l.lac,
        l.firstSeen,
        l.durableRecords,
      ]),
    };
    await writeFileAtomic(this.checkpointPath, JSON.stringify(cp));
  }

  /** Forget a ledger and delete its index file; the caller rewrites the checkpoint. */
  async drop(ledgerId: number): Promise<void> {
    const l = this.ledgers.get(ledgerId);
    if (!l) return;
    l.entries.each((_entryId, logId, _offset, length) => {
      this.liveBytes.set(logId, (this.liveBytes.get(logId) ?? 0) - length);
    });
    this.ledgers.delete(ledgerId);
    try {
      await unlink(join(this.indexDir, `${ledgerId}.idx`));
      await fsyncDir(this.indexDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}
