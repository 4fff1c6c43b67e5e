import { type FileHandle, mkdir, open, readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32c, fsyncDir } from '@sluice/common';
import { DIRECT_IO_CREATE_FLAGS } from './direct-io.js';
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
  private unsynced: FileHandle[] = [];
  private readers = new Map<number, ReadHandle>();
  /** Size of every log file, for the live-fraction accounting of compaction. */
  readonly sizes = new Map<number, number>();

  constructor(
    private readonly dir: string,
    private readonly fileBytes: number,
  ) {}

  get currentLogId(): number {
    return this.writerId;
  }

  /** A log being appended to (never compacted or deleted). */
  isActive(id: number): boolean {
    return id === this.writerId || this.othersActive.has(id);
  }

  /**
   * Create a new, empty log for another writer (the direct log) with an id
   * after every existing one; `fh` resolves once the file's directory entry
   * is durable. The id is known at once; the log stays active until
   * `release`. With `directIo` the file is opened with O_DIRECT: writes
   * must then be aligned (see direct-io.ts).
   */
  create(directIo = false): { id: number; fh: Promise<FileHandle> } {
    const id = ++this.lastId;
    this.othersActive.add(id);
    this.sizes.set(id, 0);
    const fh = (async () => {
      const f = await open(join(this.dir, fileName(id)), directIo ? DIRECT_IO_CREATE_FLAGS : 'wx', 0o666);
      try {
        await fsyncDir(this.dir);
      } catch (err) {
        await f.close();
        throw err;
      }
      return f;
    })();
    return { id, fh };
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
    for (const name of await readdir(this.dir)) {
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

  /** Make every append so far durable. */
  async sync(): Promise<void> {
    const old = this.unsynced.splice(0);
    for (const fh of old) {
      await fh.datasync();
      await fh.close();
    }
    await this.writer?.datasync();
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
   * Whether the record at `loc` was ever written: its log reaches past it
   * and its header is not zeros. An O_DIRECT log pads its last block with
   * zeros, so a record of a write that never happened can lie inside the
   * file. What was written is verified on every read.
   */
  async wasWritten(loc: EntryLocation, logSize: number): Promise<boolean> {
    if (logSize < loc.offset + loc.length) return false;
    const head = await this.readRaw({ ...loc, length: Math.min(loc.length, ENTRY_HEADER_BYTES) });
    return head.some((b) => b !== 0);
  }

  async read(loc: EntryLocation, ledgerId: number, entryId: number): Promise<ReadOutcome> {
    return decodeEntry(await this.readRaw(loc), ledgerId, entryId);
  }

  private async closeReader(id: number, h: ReadHandle): Promise<void> {
    if (this.readers.get(id) === h) this.readers.delete(id);
    await h.fh.close();
  }

  /** Delete a log that nothing points to any more; reads in flight finish first. */
  async delete(id: number): Promise<void> {
    if (this.isActive(id)) throw new Error(`entry log ${id} is being written and cannot be deleted`);
    await unlink(join(this.dir, fileName(id)));
    await fsyncDir(this.dir);
    this.sizes.delete(id);
    const h = this.readers.get(id);
    if (h) {
      h.deleted = true;
      this.readers.delete(id);
      if (h.users === 0) await h.fh.close();
    }
  }

  async close(): Promise<void> {
    await this.sync();
    await this.writer?.close();
    this.writer = undefined;
    for (const [id, h] of [...this.readers]) await this.closeReader(id, h);
  }
}
