import { constants } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32c, fsyncDir } from '@sluice/common';
import { DIRECT_IO_CREATE_FLAGS } from './direct-io.js';
import type { FileDeleter } from './file-deleter.js';
import { writeInt64LE } from './int64.js';

/**
 * Entry log record layout (little endian), format version 2:
 *
 *   u32 bodyLength | u32 crc32c(header bytes 8..HEADER) | u64 ledgerId |
 *   u64 entryId | i64 lac | i64 ledgerLength | u32 payloadCrc | u32 0 | payload
 *
 * Entries of many ledgers are interleaved in large append-only files; the
 * index maps (ledger, entry) to (log, offset, length). The header CRC guards
 * the ids, LAC and ledger length (recovery closes ledgers with that length);
 * the payload keeps the writer's CRC32C. Both are checked on every read.
 */
export const ENTRY_HEADER_BYTES = 48;

export interface EntryLocation {
  logId: number;
  offset: number;
  /** Bytes of the whole record, header included. */
  length: number;
}

export interface StoredEntry {
  ledgerId: number;
  entryId: number;
  lac: number;
  crc32c: number;
  /** Payload bytes of the ledger up to and including this entry, as the writer counted them (0: unknown). */
  ledgerLength: number;
  payload: Buffer;
}

export type ReadOutcome = { ok: true; entry: StoredEntry } | { ok: false; reason: string };

const headerScratch = Buffer.alloc(ENTRY_HEADER_BYTES);
const headerScratchBody = headerScratch.subarray(8);

/** Write the record header of `e` at `out[at]` (the payload goes right after it). */
export function writeEntryHeader(
  out: Buffer,
  at: number,
  e: Omit<StoredEntry, 'payload'>,
  payloadLength: number,
): void {
  // Built in a scratch buffer and copied into place: the CRC is computed
  // over a fixed view instead of a fresh `subarray` per entry.
  const h = headerScratch;
  h.writeUInt32LE(ENTRY_HEADER_BYTES - 4 + payloadLength, 0);
  writeInt64LE(h, e.ledgerId, 8);
  writeInt64LE(h, e.entryId, 16);
  writeInt64LE(h, e.lac, 24);
  writeInt64LE(h, e.ledgerLength, 32);
  h.writeUInt32LE(e.crc32c >>> 0, 40);
  h.writeUInt32LE(0, 44);
  h.writeUInt32LE(crc32c(headerScratchBody), 4);
  out.set(h, at);
}

/**
 * Whether `head`, the first ENTRY_HEADER_BYTES of a record of `length`
 * bytes, is an intact header of entry `e`: its CRC holds, and it names the
 * same ledger, entry, length and payload CRC32C.
 */
export function headerNames(
  head: Buffer,
  length: number,
  e: { ledgerId: number; entryId: number; crc32c: number },
): boolean {
  return (
    head.length === ENTRY_HEADER_BYTES &&
    head.readUInt32LE(0) + 4 === length &&
    crc32c(head.subarray(8, ENTRY_HEADER_BYTES)) === head.readUInt32LE(4) &&
    Number(head.readBigUInt64LE(8)) === e.ledgerId &&
    Number(head.readBigUInt64LE(16)) === e.entryId &&
    head.readUInt32LE(40) === e.crc32c >>> 0
  );
}

/** Parse and verify a record read back from a log; anything inconsistent is corruption. */
export function decodeEntry(buf: Buffer, ledgerId: number, entryId: number): ReadOutcome {
  if (buf.length < ENTRY_HEADER_BYTES)
    return { ok: false, reason: `record is ${buf.length} bytes, shorter than a header` };
  const bodyLength = buf.readUInt32LE(0);
  if (bodyLength + 4 !== buf.length)
    return { ok: false, reason: `record length ${bodyLength + 4} != indexed ${buf.length}` };
  const headerCrc = buf.readUInt32LE(4);
  const actualHeaderCrc = crc32c(buf.subarray(8, ENTRY_HEADER_BYTES));
  if (actualHeaderCrc !== headerCrc)
    return { ok: false, reason: `header CRC32C ${actualHeaderCrc} != stored ${headerCrc}` };
  const storedLedger = Number(buf.readBigUInt64LE(8));
  const storedEntry = Number(buf.readBigUInt64LE(16));
  if (storedLedger !== ledgerId || storedEntry !== entryId) {
    return {
      ok: false,
      reason: `record holds ${storedLedger}:${storedEntry}, index says ${ledgerId}:${entryId}`,
    };
  }
  const payload = buf.subarray(ENTRY_HEADER_BYTES);
  const crc = buf.readUInt32LE(40);
  const actual = crc32c(payload);
  if (actual !== crc) return { ok: false, reason: `payload CRC32C ${actual} != stored ${crc}` };
  return {
    ok: true,
    entry: {
      ledgerId,
      entryId,
      lac: Number(buf.readBigInt64LE(24)),
      ledgerLength: Number(buf.readBigInt64LE(32)),
      crc32c: crc,
      payload,
    },
  };
}

/**
 * Append `b` to a writev list, merged into the previous buffer when it
 * continues it in memory (records cut from one write-cache chunk go out as
 * one iovec, not one per record).
 */
function pushCoalesced(list: Buffer[], b: Buffer): void {
  if (b.length === 0) return;
  const prev = list.at(-1);
  if (prev && prev.buffer === b.buffer && prev.byteOffset + prev.length === b.byteOffset) {
    list[list.length - 1] = Buffer.from(prev.buffer, prev.byteOffset, prev.length + b.length);
  } else list.push(b);
}

/** The error of a write that wrote less than it was given (a full disk, as a rule). */
export function shortWrite(written: number, bytes: number): Error {
  return Object.assign(new Error(`short entry log write: ${written} of ${bytes} bytes (disk full?)`), {
    code: 'ENOSPC',
  });
}

const FILE_RE = /^entrylog-(\d{16})\.log$/;
const fileName = (id: number) => `entrylog-${String(id).padStart(16, '0')}.log`;
const SPARE_RE = /^entrylog-spare-(\d{16})\.log$/;
/** A deleted log still being freed (`DELETING_SUFFIX`). */
const DELETING_RE = /^entrylog-(\d{16})\.log\.deleting$/;
const spareName = (seq: number) => `entrylog-spare-${String(seq).padStart(16, '0')}.log`;
/** A deleted log smaller than this is not worth keeping for reuse (unless logs are smaller; see `minSpareBytes`). */
const MIN_SPARE_BYTES = 16 * 1024 * 1024;

interface Spare {
  name: string;
  size: number;
}

interface ReadHandle {
  fh: FileHandle;
  users: number;
  deleted: boolean;
}

/**
 * The set of entry log files of one ledger dir: one being appended to, the
 * rest read-only. Appends are plain writes (no fsync); `sync` makes every
 * append so far durable, which a checkpoint does before it trusts them.
 */
export class EntryLogs {
  private writer: FileHandle | undefined;
  private writerId = 0;
  private writerOffset = 0;
  private lastId = 0;
  /** Logs other writers (the direct log) are still appending to. */
  private readonly othersActive = new Set<number>();
  /**
   * Adds written once into a log and not yet indexed (or failed), by log.
   * Such a log holds bytes no index record counts as live yet, so it is
   * never compacted or deleted: its own writes may settle well before the
   * ADD_REF journal records of the adds in it.
   */
  private readonly unindexed = new Map<number, number>();
  private unsynced: FileHandle[] = [];
  /**
   * Logs this process has no write handle for that replay indexed entries
   * in: the next `sync` fdatasyncs them (see `adopt`).
   */
  private readonly adopted = new Set<number>();
  private readers = new Map<number, ReadHandle>();
  /** Size of every log file, for the live-fraction accounting of compaction. */
  readonly sizes = new Map<number, number>();
  /** Deleted logs kept for reuse by `create`, oldest first (see `spareBytes`). */
  private spares: Spare[] = [];
  private spareSeq = 0;

  constructor(
    private readonly dir: string,
    private readonly fileBytes: number,
    /**
     * Deleted logs up to this many bytes are kept (renamed) for `create` to
     * write over instead of growing a new file: an fdatasync of blocks a
     * file already holds has no size or extent change to commit to the file
     * system's journal, which took a paced add's p99 from ~6 to ~4 ms on
     * this disk (test/perf/disk-latency.ts). 0 deletes them outright.
     */
    private readonly spareBytes = 0,
    /** Frees the space of the logs it deletes (at once when absent). */
    private readonly deleter?: FileDeleter,
  ) {}

  private async remove(path: string): Promise<void> {
    if (this.deleter) await this.deleter.delete(path);
    else await unlink(path);
  }

  /** A deleted log smaller than this is not worth keeping: half a full log, at most MIN_SPARE_BYTES. */
  private get minSpareBytes(): number {
    return Math.min(MIN_SPARE_BYTES, this.fileBytes / 2);
  }

  private get sparesBytes(): number {
    return this.spares.reduce((n, s) => n + s.size, 0);
  }

  /** Whether a deleted log of `size` bytes is kept as a spare, within the budget. */
  private keepsSpare(size: number): boolean {
    return size >= this.minSpareBytes && this.sparesBytes + size <= this.spareBytes;
  }

  /** Deleted logs kept for reuse, and their bytes. */
  get spareLogs(): { count: number; bytes: number } {
    return { count: this.spares.length, bytes: this.sparesBytes };
  }

  get currentLogId(): number {
    return this.writerId;
  }

  /** A log being appended to, or holding adds not yet indexed (never compacted or deleted). */
  isActive(id: number): boolean {
    return id === this.writerId || this.othersActive.has(id) || this.unindexed.has(id);
  }

  /** An add was written into log `id`; keep the log until `unpin` says it is indexed (or failed). */
  pin(id: number): void {
    this.unindexed.set(id, (this.unindexed.get(id) ?? 0) + 1);
  }

  unpin(id: number): void {
    const n = this.unindexed.get(id) ?? 0;
    if (n <= 1) this.unindexed.delete(id);
    else this.unindexed.set(id, n - 1);
  }

  /**
   * Replay indexed an entry in log `id`, written before a crash. Its
   * bytes may have reached only the page cache (an add whose group was
   * written but never fdatasynced, so never acknowledged), and the
   * handle that wrote them is gone: `sync` only covers handles of this
   * process. So the next `sync`, which every checkpoint and early index
   * persist runs first, fdatasyncs the file itself: no persisted index
   * record may point at bytes a crash could still take.
   */
  adopt(id: number): void {
    this.adopted.add(id);
  }

  /**
   * Create a log for another writer (the direct log) with an id after every
   * existing one; `fh` resolves once the file's directory entry is durable.
   * The id is known at once; the log stays active until `release`. With
   * `directIo` the file is opened with O_DIRECT: writes must then be aligned
   * (see direct-io.ts).
   *
   * A spare (a deleted log kept for reuse) becomes the file when there is
   * one: the writer writes over its old records from offset 0. What it has
   * not written over yet still holds them, so a reference must never be
   * trusted for the file's size alone: replay checks that the header at a
   * reference names its entry (`holdsEntry`), and an old record of that same
   * entry (a ledger's entries never change) would hold the same bytes.
   */
  create(directIo = false): { id: number; fh: Promise<FileHandle>; allocated: number } {
    const id = ++this.lastId;
    this.othersActive.add(id);
    this.sizes.set(id, 0);
    const spare = this.spares.shift();
    const fh = (async () => {
      const path = join(this.dir, fileName(id));
      let f: FileHandle | undefined;
      if (spare) {
        try {
          await rename(join(this.dir, spare.name), path);
          f = await open(path, constants.O_WRONLY | (directIo ? constants.O_DIRECT : 0));
        } catch {
          // Gone or unusable: a new file instead (the name is free, or holds nothing referenced yet).
          await unlink(path).catch(() => undefined);
        }
      }
      f ??= await open(path, directIo ? DIRECT_IO_CREATE_FLAGS : 'wx', 0o666);
      try {
        await fsyncDir(this.dir);
      } catch (err) {
        await f.close();
        throw err;
      }
      return f;
    })();
    return { id, fh, allocated: spare?.size ?? 0 };
  }

  /** Another writer appended up to `size` bytes of log `id`. */
  grew(id: number, size: number): void {
    this.sizes.set(id, size);
  }

  /** Another writer is done with log `id` (its appends are durable). */
  release(id: number): void {
    this.othersActive.delete(id);
  }

  /**
   * Find existing logs and open a new one to append to (an old tail may be
   * torn). Empty logs (each start and each roll leaves one behind at a stop)
   * hold nothing the index can point to and are deleted.
   */
  async open(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    let max = 0;
    let removed = false;
    const spares: { seq: number; name: string; size: number }[] = [];
    for (const name of await readdir(this.dir)) {
      const spare = SPARE_RE.exec(name);
      if (spare) {
        spares.push({ seq: Number(spare[1]), name, size: (await stat(join(this.dir, name))).size });
        continue;
      }
      const deleting = DELETING_RE.exec(name);
      // Still being freed: its id is not given to a new log.
      if (deleting) max = Math.max(max, Number(deleting[1]));
      const m = FILE_RE.exec(name);
      if (!m) continue;
      const id = Number(m[1]);
      max = Math.max(max, id);
      const { size } = await stat(join(this.dir, name));
      if (size === 0) {
        await unlink(join(this.dir, name));
        removed = true;
      } else this.sizes.set(id, size);
    }
    for (const s of spares.sort((a, b) => a.seq - b.seq)) {
      this.spareSeq = Math.max(this.spareSeq, s.seq);
      if (this.keepsSpare(s.size)) this.spares.push({ name: s.name, size: s.size });
      else {
        await this.remove(join(this.dir, s.name));
        removed = true;
      }
    }
    if (removed) await fsyncDir(this.dir);
    this.lastId = max;
    await this.roll();
  }

  private async roll(): Promise<void> {
    const id = ++this.lastId;
    const fh = await open(join(this.dir, fileName(id)), 'wx');
    await fsyncDir(this.dir);
    if (this.writer) this.unsynced.push(this.writer);
    this.writer = fh;
    this.writerId = id;
    this.writerOffset = 0;
    this.sizes.set(id, 0);
  }

  /**
   * Append records (header + payload buffers); returns where each landed.
   * Callers serialize appends. A batch is split at file boundaries so no log
   * grows past `fileBytes` (a single larger record gets a file of its own),
   * and a log that is full is rolled away at once: compaction never touches
   * the log being written, so a full log that stayed current on an idle
   * bookie would hold its dead entries forever.
   */
  async append(records: { header: Buffer; payload: Buffer }[]): Promise<EntryLocation[]> {
    const locations: EntryLocation[] = [];
    let i = 0;
    while (i < records.length) {
      if (this.writerOffset >= this.fileBytes) await this.roll();
      const buffers: Buffer[] = [];
      let offset = this.writerOffset;
      while (i < records.length) {
        const r = records[i]!;
        const length = r.header.length + r.payload.length;
        if (offset > 0 && offset + length > this.fileBytes) break;
        pushCoalesced(buffers, r.header);
        pushCoalesced(buffers, r.payload);
        locations.push({ logId: this.writerId, offset, length });
        offset += length;
        i++;
      }
      if (buffers.length === 0) {
        await this.roll();
        continue;
      }
      await this.write(buffers, offset);
    }
    if (this.writerOffset >= this.fileBytes) await this.roll();
    return locations;
  }

  private async write(buffers: Buffer[], end: number): Promise<void> {
    const bytes = end - this.writerOffset;
    const { bytesWritten } = await this.writer!.writev(buffers, this.writerOffset);
    if (bytesWritten !== bytes) throw shortWrite(bytesWritten, bytes);
    this.writerOffset = end;
    this.sizes.set(this.writerId, end);
  }

  /**
   * Make every append so far durable, and every adopted log. Every
   * rolled-away handle is closed even when an fdatasync fails (the failure
   * is thrown after, and fails the storage: a failed flush is never retried).
   */
  async sync(): Promise<void> {
    let failure: unknown;
    const note = (err: unknown) => {
      failure ??= err;
    };
    for (const fh of this.unsynced.splice(0)) {
      await fh.datasync().catch(note);
      await fh.close().catch(note);
    }
    for (const id of [...this.adopted]) {
      await this.syncFile(id).then(() => this.adopted.delete(id), note);
    }
    if (failure !== undefined) throw failure;
    await this.writer?.datasync();
  }

  private async syncFile(id: number): Promise<void> {
    let fh: FileHandle;
    try {
      fh = await open(join(this.dir, fileName(id)), 'r');
    } catch (err) {
      // Compacted away since (after its entries were copied and synced).
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    try {
      await fh.datasync();
    } finally {
      await fh.close();
    }
  }

  /** Size of log `id` on disk (0 when it does not exist). */
  async fileSize(id: number): Promise<number> {
    try {
      return (await stat(join(this.dir, fileName(id)))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
  }

  /** Read the raw record at `loc` (header included). */
  async readRaw(loc: EntryLocation): Promise<Buffer> {
    let h = this.readers.get(loc.logId);
    if (!h) {
      h = { fh: await open(join(this.dir, fileName(loc.logId)), 'r'), users: 0, deleted: false };
      const raced = this.readers.get(loc.logId);
      if (raced) {
        await h.fh.close();
        h = raced;
      } else if (!this.sizes.has(loc.logId)) {
        // delete() ran while we were opening (it drops the size and looks for
        // readers in one step): this read may finish, but a cached handle
        // would keep the unlinked file's space until the bookie stops.
        h.deleted = true;
      } else this.readers.set(loc.logId, h);
    }
    h.users++;
    try {
      const buf = Buffer.allocUnsafe(loc.length);
      const { bytesRead } = await h.fh.read(buf, 0, loc.length, loc.offset);
      return buf.subarray(0, bytesRead);
    } finally {
      h.users--;
      if (h.deleted && h.users === 0) await this.closeReader(loc.logId, h);
    }
  }

  /**
   * Whether the log `loc` names (of `logSize` bytes) holds entry `e` at
   * `loc`, as a journal ADD_REF record says: the log reaches past the record and its
   * header is intact and names `e` (see `headerNames`). The payload is
   * verified on every read, as always.
   *
   * A reference that fails this belongs to an add that was never
   * acknowledged: an acknowledged entry was written whole and fdatasynced
   * into a file created (and its directory entry made durable) before the
   * write. It fails when the write never landed (past the end, or zeros: an
   * O_DIRECT log pads blocks, and a later group may land while an earlier
   * one did not), and when the log's id was taken again after a crash. The
   * direct log names a log in an ADD_REF queued in the add's own turn,
   * while the file is still being created in the background; a crash before
   * it is durable (or the deletion of empty logs at start) frees the id,
   * and the next start's logs can hold other records where the reference
   * points. Checking the header is one small read per reference at replay;
   * the other way, persisting a high-water id before any reference to it
   * can be durable, would hold the journal behind a directory fsync. (A
   * header damaged on disk within the replay window reads as never written,
   * as a damaged journal record ends the journal's replay.)
   */
  async holdsEntry(
    loc: EntryLocation,
    logSize: number,
    e: { ledgerId: number; entryId: number; crc32c: number },
  ): Promise<boolean> {
    if (loc.length < ENTRY_HEADER_BYTES || logSize < loc.offset + loc.length) return false;
    const head = await this.readRaw({ ...loc, length: ENTRY_HEADER_BYTES });
    return headerNames(head, loc.length, e);
  }

  async read(loc: EntryLocation, ledgerId: number, entryId: number): Promise<ReadOutcome> {
    return decodeEntry(await this.readRaw(loc), ledgerId, entryId);
  }

  private async closeReader(id: number, h: ReadHandle): Promise<void> {
    if (this.readers.get(id) === h) this.readers.delete(id);
    await h.fh.close();
  }

  /**
   * Delete a log that nothing points to any more; reads in flight finish
   * first. It is kept as a spare for `create` while the spares stay within
   * `spareBytes` (and no read of it is in flight: a spare gets written over).
   */
  async delete(id: number): Promise<void> {
    if (this.isActive(id)) throw new Error(`entry log ${id} is being written and cannot be deleted`);
    const path = join(this.dir, fileName(id));
    const h = this.readers.get(id);
    const size = this.spareBytes > 0 ? await this.fileSize(id) : 0;
    const reading = h !== undefined && h.users > 0;
    if (this.keepsSpare(size) && !reading) {
      const name = spareName(++this.spareSeq);
      await rename(path, join(this.dir, name));
      this.spares.push({ name, size });
    } else if (reading) {
      // Unlinked, the file keeps its blocks until the read closes it; freed in steps it would not.
      await unlink(path);
    } else await this.remove(path);
    await fsyncDir(this.dir);
    this.sizes.delete(id);
    if (h) {
      h.deleted = true;
      this.readers.delete(id);
      if (h.users === 0) await h.fh.close();
    }
  }

  /** Delete every spare (the disk is filling up: their space goes back to it). */
  async dropSpares(): Promise<number> {
    const spares = this.spares;
    this.spares = [];
    for (const s of spares) await unlink(join(this.dir, s.name)).catch(() => undefined);
    if (spares.length > 0) await fsyncDir(this.dir);
    return spares.length;
  }

  async close(): Promise<void> {
    await this.sync();
    await this.writer?.close();
    this.writer = undefined;
    for (const [id, h] of [...this.readers]) await this.closeReader(id, h);
  }
}
