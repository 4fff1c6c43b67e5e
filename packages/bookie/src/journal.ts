import { constants } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { FailedPreconditionError, fsyncDir, type Logger } from '@sluice/common';
import { type Durable, type DurableCallback, notifyDurable } from './durable.js';
import type { FileDeleter } from './file-deleter.js';
import {
  decodeRecord,
  encodeRecordHeader,
  JOURNAL_FORMAT_VERSION,
  JOURNAL_HEADER_BYTES,
  type JournalRecord,
  writeRecordHeader,
} from './journal-record.js';
import type { BookieMetrics } from './metrics.js';

/** A point in the journal: the byte offset inside journal file `fileId`. */
export interface JournalPosition {
  fileId: number;
  offset: number;
}

export function comparePositions(a: JournalPosition, b: JournalPosition): number {
  return a.fileId - b.fileId || a.offset - b.offset;
}

export interface JournalOptions {
  dir: string;
  groupBytes: number;
  groupWaitMs: number;
  fileBytes: number;
  /**
   * Make each group durable before its callbacks run. The file is opened
   * with O_DSYNC, so one writev both writes and flushes a group: a single
   * trip to libuv's thread pool instead of a writev and then an fdatasync,
   * each of which waited for a pool thread and then for the event loop to
   * take its result. False acknowledges adds once written to the page cache
   * (a crash of the machine can lose them).
   */
  sync: boolean;
  /**
   * Zero-fill a fresh journal file this far ahead of the write position, so
   * that most group writes overwrite allocated blocks of a file whose size
   * does not change: their flush covers data only and never waits for a
   * file system journal commit (which other files' metadata, e.g. a
   * checkpoint's, can make slow).
   * 0 turns it off. A write that carries fill never overlaps another
   * write (see `flush`).
   */
  preallocBytes: number;
  /**
   * Group writes in flight at once (≥ 1). With 2, a group that gathers
   * while a write is in flight starts its own write at once instead of
   * waiting for the earlier one to finish: the two flushes overlap in the
   * kernel, so an add waits about one flush, not up to two. Callbacks still
   * run in append order, and a group is acknowledged only once every group
   * before it is durable too (replay stops at the first torn record).
   */
  maxWritesInFlight: number;
  /** Frees the space of retired files that are not kept as spares (at once when absent). */
  deleter?: FileDeleter;
  logger: Logger;
  metrics: BookieMetrics;
}

/** Replay reads the journal this much at a time (more when one record is larger). */
const REPLAY_READ_BYTES = 4 * 1024 * 1024;
/** Records below this size (on average in a group) are copied into one buffer. */
const SMALL_RECORD_BYTES = 8192;
/** The largest group buffer a journal keeps for reuse. */
const MAX_GROUP_BUFFER_BYTES = 8 * 1024 * 1024;

interface Pending {
  rec: JournalRecord;
  bytes: number;
  done: DurableCallback | Durable;
}

/** A group whose write was issued, in issue order. */
interface Write {
  group: Pending[];
  /** The journal position right after the group. */
  end: JournalPosition;
  /** Its writev returned (successfully or not). */
  completed: boolean;
}

const FILE_RE = /^journal-(\d{16})\.log$/;
const SPARE_RE = /^journal-spare-\d{16}\.log$/;
/** Retired journal files kept for reuse (each up to `fileBytes` of disk). */
const SPARE_FILES = 2;
let zeroBuffer = Buffer.alloc(0);
function zeros(n: number): Buffer {
  if (zeroBuffer.length < n) zeroBuffer = Buffer.alloc(n);
  return zeroBuffer.subarray(0, n);
}
const fileName = (id: number) => `journal-${String(id).padStart(16, '0')}.log`;

interface PreparedFile {
  id: number;
  fh: FileHandle;
  /** Bytes the file already owns (a recycled spare's size). */
  allocated: number;
}

/**
 * The write-ahead log. Adds are group-committed: while `maxWritesInFlight`
 * durable writes are in flight the next group gathers, and otherwise the
 * journal waits at most `groupWaitMs` (or until `groupBytes` are pending)
 * before writing. Groups complete in the order they were written. A failed
 * write poisons the journal for good: after a failed flush Linux may have
 * dropped the dirty pages, so retrying could ack data that is gone.
 */
export class Journal {
  private fh: FileHandle | undefined;
  private fileId = 0;
  private offset = 0;
  /** Bytes of the current file known to be allocated (written data or zero fill). */
  private allocated = 0;
  /** Set once a fill came up short (disk nearly full): no more fill in this file. */
  private fillStopped = false;
  /** A write carrying zero fill is in flight: no other write starts until it returns (see `flush`). */
  private fillInFlight = false;
  private pending: Pending[] = [];
  /** Buffers for groups of small records not in use by a write (see `encodeGroup`). */
  private readonly groupBuffers: Buffer[] = [];
  private pendingBytes = 0;
  /** Writes issued and not yet settled, oldest first. */
  private readonly writes: Write[] = [];
  /** A file roll is under way: no write starts until it is done. */
  private rolling = false;
  /** The file the next roll switches to, being prepared or ready (see `prepareFile`). */
  private next: Promise<PreparedFile> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private failure: Error | undefined;
  private closed = false;
  private idleWaiters: (() => void)[] = [];
  /** Everything before this position is durable and its callbacks have run. */
  syncedPosition: JournalPosition = { fileId: 0, offset: 0 };

  constructor(private readonly opts: JournalOptions) {}

  /** Bytes queued behind the groups being written (0 while idle). */
  get backlogBytes(): number {
    return this.writes.length > 0 ? this.pendingBytes : 0;
  }

  get failed(): Error | undefined {
    return this.failure;
  }

  get queuedRecords(): number {
    return this.pending.length;
  }

  async listFileIds(): Promise<number[]> {
    await mkdir(this.opts.dir, { recursive: true });
    const ids: number[] = [];
    for (const name of await readdir(this.opts.dir)) {
      const m = FILE_RE.exec(name);
      if (m) ids.push(Number(m[1]));
    }
    return ids.sort((a, b) => a - b);
  }

  /**
   * Replay every intact record from `from` on, in order. A torn or corrupt
   * record ends the replay of its file quietly (it is the tail a crash left).
   * Records are bounded only by what the format can hold, not by today's
   * `maxEntryBytes`: a record written under a larger setting was
   * acknowledged, and stopping at it would drop it and everything after it.
   */
  async replay(
    from: JournalPosition,
    onRecord: (rec: JournalRecord, end: JournalPosition) => void | Promise<void>,
  ): Promise<number> {
    let count = 0;
    const ids = (await this.listFileIds()).filter((id) => id >= from.fileId);
    for (const id of ids) {
      const start = id === from.fileId ? from.offset : 0;
      const fh = await open(join(this.opts.dir, fileName(id)), 'r');
      try {
        const size = (await fh.stat()).size;
        let pos = start;
        let buf = Buffer.alloc(0);
        let bufStart = start;
        for (;;) {
          const rel = pos - bufStart;
          const res = decodeRecord(buf, rel, id);
          if (res.ok) {
            pos += res.size;
            count++;
            await onRecord(res.record, { fileId: id, offset: pos });
            continue;
          }
          if (res.reason === 'short' && bufStart + buf.length < size) {
            // An intact header in hand (decodeRecord checked it before
            // finding the body short) says how large its record is: read at
            // least the rest of it.
            const have = buf.length - rel;
            const rest = have >= JOURNAL_HEADER_BYTES ? 8 + buf.readUInt32LE(rel) - have : 0;
            const need = Math.max(REPLAY_READ_BYTES, rest);
            const chunk = Buffer.allocUnsafe(Math.min(need, size - (bufStart + buf.length)));
            const { bytesRead } = await fh.read(chunk, 0, chunk.length, bufStart + buf.length);
            buf = Buffer.concat([buf.subarray(rel), chunk.subarray(0, bytesRead)]);
            bufStart = pos;
            continue;
          }
          if (res.reason === 'version') {
            throw new FailedPreconditionError(
              `journal ${join(this.opts.dir, fileName(id))} holds a record of another format at offset ${pos} (this build writes version ${JOURNAL_FORMAT_VERSION}); ` +
                'start the bookie build that wrote it, or wipe the data dir so the bookie joins as a new one',
            );
          }
          if (res.reason === 'stale' || res.reason === 'zero') {
            this.opts.logger.debug(
              { file: fileName(id), offset: pos },
              'journal replay reached recycled space',
            );
          } else if (pos < size) {
            this.opts.logger.warn(
              { file: fileName(id), offset: pos, size, reason: res.reason },
              'journal replay stopped at a torn or corrupt record (expected after a crash)',
            );
          }
          break;
        }
      } finally {
        await fh.close();
      }
    }
    return count;
  }

  /** Open a fresh journal file after every existing one; never append after a possibly torn tail. */
  async start(): Promise<void> {
    const ids = await this.listFileIds();
    this.use(await this.prepareFile((ids.at(-1) ?? 0) + 1));
  }

  /**
   * Make journal file `id` ready to write, reusing a spare (a checkpointed
   * old journal file) when there is one: overwriting blocks the file
   * already owns makes each group's flush cover data only, where appending
   * to a fresh file also commits the file system journal (size and block
   * allocation) every time.
   *
   * The next file is prepared in the background as soon as one is in use,
   * so a roll only swaps handles: preparing it renames or creates a file
   * and fsyncs the directory, a file system journal commit that took tens
   * to hundreds of milliseconds on a busy disk, and adds queued behind the
   * roll waited for it. Until records are written into it the prepared
   * file holds nothing (a new file) or a spare's stale records, which carry
   * their old file id: replay passes over it, as it does over a file a
   * crash left just after a roll.
   */
  private async prepareFile(id: number): Promise<PreparedFile> {
    const path = join(this.opts.dir, fileName(id));
    const spare = (await this.listSpares()).at(0);
    let fh: FileHandle;
    let allocated = 0;
    const dsync = this.opts.sync ? constants.O_DSYNC : 0;
    if (spare === undefined)
      fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | dsync);
    else {
      await rename(join(this.opts.dir, spare), path);
      fh = await open(path, constants.O_RDWR | dsync);
      allocated = (await fh.stat()).size;
      this.opts.metrics.journalFilesRecycled.inc();
    }
    try {
      await fsyncDir(this.opts.dir);
    } catch (err) {
      await fh.close();
      throw err;
    }
    return { id, fh, allocated };
  }

  /** Write into a prepared file from now on, and start preparing the one after it. */
  private use(file: PreparedFile): void {
    const old = this.fh;
    this.fh = file.fh;
    this.fileId = file.id;
    this.offset = 0;
    this.allocated = file.allocated;
    this.fillStopped = false;
    this.syncedPosition = { fileId: file.id, offset: 0 };
    old?.close().catch((err) => this.opts.logger.warn({ err }, 'closing a journal file failed'));
    const next = this.prepareFile(file.id + 1);
    // Failures surface at the roll that needs the file.
    next.catch(() => undefined);
    this.next = next;
  }

  /** Queue a record; `done` runs once it is durable or failed. */
  append(rec: JournalRecord, done: DurableCallback | Durable): void {
    if (this.failure) {
      notifyDurable(done, this.failure);
      return;
    }
    if (this.closed || !this.fh) {
      notifyDurable(done, new Error('journal is closed'));
      return;
    }
    const bytes = JOURNAL_HEADER_BYTES + rec.payload.length;
    this.pending.push({ rec, bytes, done });
    this.pendingBytes += bytes;
    this.schedule();
  }

  /**
   * While writes are in flight the next group gathers by itself, so an idle
   * journal need not wait for company: by default it writes at the end of
   * the current event-loop turn (every add decoded from the same gRPC
   * messages shares the group), and so does a journal with a free write
   * slot. A positive `groupWaitMs` waits that long instead, trading latency
   * for fewer fsyncs on a slow disk.
   */
  private schedule(): void {
    if (this.failure || this.rolling || this.fillInFlight || this.pending.length === 0) return;
    if (this.writes.length >= this.opts.maxWritesInFlight) return;
    // A file roll waits until the writes into the current file have settled.
    if (this.writes.length > 0 && this.needsRoll()) return;
    if (this.pendingBytes >= this.opts.groupBytes) {
      this.clearTimer();
      void this.flush();
      return;
    }
    if (this.timer || this.immediate) return;
    if (this.opts.groupWaitMs > 0) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.flush();
      }, this.opts.groupWaitMs);
    } else {
      this.immediate = setImmediate(() => {
        this.immediate = undefined;
        void this.flush();
      });
    }
  }

  private needsRoll(): boolean {
    return this.offset > 0 && this.offset + this.pendingBytes > this.opts.fileBytes;
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.immediate) clearImmediate(this.immediate);
    this.immediate = undefined;
  }

  /**
   * A group's records as buffers to write, and the group buffer it used (to
   * give back once the write settles). Small records are copied, headers and
   * payloads, into one reused buffer: many small iovecs cost more main-thread
   * time to hand to libuv than one memcpy, and a fresh buffer per group was
   * ~50 MB/s of external memory at 50k adds/s, which drives V8's full
   * collections. Large payloads are passed as they are (no copy).
   */
  private encodeGroup(
    group: Pending[],
    bytes: number,
    fileId: number,
  ): { out: Buffer[]; used: Buffer | undefined } {
    if (bytes >= group.length * SMALL_RECORD_BYTES) {
      const out: Buffer[] = [];
      for (const { rec } of group) {
        out.push(encodeRecordHeader(rec, rec.payload.length, fileId));
        if (rec.payload.length > 0) out.push(rec.payload);
      }
      return { out, used: undefined };
    }
    let buf = this.groupBuffers.pop();
    if (!buf || buf.length < bytes)
      buf = Buffer.allocUnsafe(Math.max(bytes, 2 * (buf?.length ?? 0), 64 * 1024));
    let at = 0;
    for (const { rec } of group) {
      writeRecordHeader(buf, at, rec, rec.payload.length, fileId);
      at += JOURNAL_HEADER_BYTES;
      at += rec.payload.copy(buf, at);
    }
    return { out: [buf.subarray(0, bytes)], used: buf };
  }

  private async flush(): Promise<void> {
    if (this.failure || this.rolling || this.fillInFlight || this.pending.length === 0) return;
    if (this.writes.length >= this.opts.maxWritesInFlight) return;
    this.clearTimer();
    if (this.needsRoll()) {
      // Rolled only with nothing in flight; the last write to settle schedules again.
      if (this.writes.length > 0) return;
      this.rolling = true;
      try {
        const id = this.fileId + 1;
        const ahead = this.next;
        this.next = undefined;
        // A preparation that failed in the background (the disk full then,
        // say) is tried once more now; failing again fails the journal.
        this.use(await (ahead ?? this.prepareFile(id)).catch(() => this.prepareFile(id)));
      } catch (err) {
        this.fail(err as Error);
        return;
      } finally {
        this.rolling = false;
        if (this.failure || this.pending.length === 0) this.notifyIdle();
      }
      if (this.failure || this.pending.length === 0) return;
    }
    const group = this.pending;
    const bytes = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    const fh = this.fh!;
    const at = this.offset;
    // Headers are encoded here: they name the file the group lands in.
    const { out, used } = this.encodeGroup(group, bytes, this.fileId);
    // Past the allocated end, the same write zero-fills the next stretch:
    // the file grows (a metadata commit) once per stretch, not per group.
    // The fill covers where the next groups' records go, and two writes in
    // flight run on two libuv threads that may land in either order: a
    // fill landing after the next group's records would zero them,
    // acknowledged, and replay would stop there. So a write carries fill
    // only when no other write is in flight, and none starts until it has
    // returned; a group that finds another write in flight goes without
    // fill (the next one written alone fills again). The common path, a
    // group inside the allocated stretch, keeps two writes in flight.
    const fill = this.writes.length === 0 ? this.zeroFill(at + bytes, bytes) : 0;
    if (fill > 0) {
      out.push(zeros(fill));
      this.fillInFlight = true;
    }
    this.offset = at + bytes;
    const write: Write = { group, end: { fileId: this.fileId, offset: at + bytes }, completed: false };
    this.writes.push(write);
    try {
      const t0 = performance.now();
      const { bytesWritten } = await fh.writev(out, at);
      // With `sync` the writev returned once the group was durable (O_DSYNC).
      if (this.opts.sync) this.opts.metrics.journalFsyncSeconds.observe((performance.now() - t0) / 1000);
      // The fill is best effort: a nearly full disk may take the records but
      // not all of the zeros after them, and then this file gets no more fill.
      const filled = Math.max(0, bytesWritten - bytes);
      if (filled < fill) this.fillStopped = true;
      if (bytesWritten < bytes) {
        throw Object.assign(
          new Error(`short journal write: ${bytesWritten} of ${bytes} bytes (disk full?)`),
          {
            code: 'ENOSPC',
          },
        );
      }
      this.allocated = Math.max(this.allocated, at + bytes + filled);
      this.opts.metrics.journalGroupBytes.observe(bytes);
      this.opts.metrics.journalGroupRecords.observe(group.length);
      this.opts.metrics.journalBytes.inc(bytes + filled);
    } catch (err) {
      this.fail(err as Error);
    } finally {
      write.completed = true;
      if (fill > 0) this.fillInFlight = false;
      if (
        used &&
        used.length <= MAX_GROUP_BUFFER_BYTES &&
        this.groupBuffers.length < this.opts.maxWritesInFlight
      )
        this.groupBuffers.push(used);
      this.settle();
      this.opts.metrics.journalQueue.set(this.pending.length);
      this.schedule();
      this.notifyIdle();
    }
  }

  private notifyIdle(): void {
    if (this.writes.length === 0 && this.pending.length === 0 && !this.rolling)
      for (const w of this.idleWaiters.splice(0)) w();
  }

  /**
   * Run the callbacks of the oldest writes that have completed, in order:
   * a group is acknowledged only once every group before it is durable. After
   * a failure every group still unsettled gets the error, even one whose own
   * write went through.
   */
  private settle(): void {
    while (this.writes.length > 0 && this.writes[0].completed) {
      const { group, end } = this.writes.shift()!;
      const err = this.failure;
      if (!err) this.syncedPosition = end;
      for (const p of group) this.complete(p, err);
    }
  }

  /** Run one record's callback; one that throws is a caller's bug, logged, and must not stall the journal. */
  private complete(p: Pending, err: Error | undefined): void {
    try {
      notifyDurable(p.done, err);
    } catch (thrown) {
      this.opts.logger.error({ err: thrown }, 'a journal record callback threw; the journal goes on');
    }
  }

  /**
   * Zero bytes to write after a group of `bytes` ending at `end`, to keep
   * preallocated space ahead of the writes. Only small groups get it: they
   * are the latency-bound ones, while a large group amortises its own
   * metadata commit and the fill would cost bandwidth under full load.
   */
  private zeroFill(end: number, bytes: number): number {
    const ahead = this.opts.preallocBytes;
    if (ahead <= 0 || this.fillStopped || end <= this.allocated || bytes >= ahead / 4) return 0;
    return Math.min(ahead, Math.max(0, this.opts.fileBytes - end));
  }

  /** Poison the journal: queued records fail now, writes in flight as they settle. */
  private fail(err: Error): void {
    if (!this.failure) {
      this.failure = err;
      this.opts.logger.error(
        { err },
        'journal write or fsync failed; this bookie accepts no more adds until restarted',
      );
    }
    this.clearTimer();
    const rest = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    for (const p of rest) this.complete(p, this.failure);
  }

  /** Resolves once nothing is queued or in flight. */
  idle(): Promise<void> {
    if (this.writes.length === 0 && this.pending.length === 0 && !this.rolling) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private async listSpares(): Promise<string[]> {
    return (await readdir(this.opts.dir)).filter((n) => SPARE_RE.test(n)).sort();
  }

  /**
   * Retire journal files whose every record lies before `pos` (never the
   * current file): up to SPARE_FILES are kept as spares for reuse, the rest
   * deleted. A spare's stale records carry their old file id, so replay
   * never takes them for records of the file it becomes.
   */
  async deleteBefore(pos: JournalPosition): Promise<number> {
    let retired = 0;
    let spares = (await this.listSpares()).length;
    for (const id of await this.listFileIds()) {
      if (id < pos.fileId && id !== this.fileId) {
        const path = join(this.opts.dir, fileName(id));
        if (spares < SPARE_FILES) {
          await rename(path, join(this.opts.dir, `journal-spare-${String(id).padStart(16, '0')}.log`));
          spares++;
        } else if (this.opts.deleter) await this.opts.deleter.delete(path);
        else await unlink(path);
        retired++;
      }
    }
    if (retired > 0) await fsyncDir(this.opts.dir);
    return retired;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.idle();
    this.clearTimer();
    await this.fh?.close();
    this.fh = undefined;
    const next = this.next;
    this.next = undefined;
    const prepared = await next?.catch(() => undefined);
    await prepared?.fh.close();
  }
}
