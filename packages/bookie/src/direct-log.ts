import type { FileHandle } from 'node:fs/promises';
import { alignDown, alignUp, allocAligned } from './direct-io.js';
import type { Durable } from './durable.js';
import { type EntryLocation, type EntryLogs, shortWrite } from './entry-log.js';
import type { BookieMetrics } from './metrics.js';

/**
 * Groups whose write may be in flight at once: an add that arrives while a
 * group is being written goes out beside it instead of waiting for it.
 */
const MAX_WRITES_IN_FLIGHT = 2;
/** Groups written whose fdatasync may be in flight (or wait for an older group) before no new group starts. */
const MAX_SYNCING_GROUPS = 2;
/** Largest O_DIRECT write: a group is copied into aligned memory this much at a time. */
const STAGING_BYTES = 4 * 1024 * 1024;

const recordBytes = (q: { header: Buffer; payload: Buffer }) => q.header.length + q.payload.length;

interface LogFile {
  id: number;
  /** Opened (and its directory entry made durable) in the background. */
  fh: Promise<FileHandle>;
  /** Bytes reserved so far. */
  reserved: number;
  /** Records still to be written to this file. */
  pendingWrites: number;
  retired: boolean;
  /**
   * Where the next group's records in this file start: the end of the
   * groups cut so far, for an O_DIRECT file rounded up to a whole block.
   */
  cut: number;
  /** Opened with O_DIRECT: writes go out in whole blocks from aligned staging memory. */
  direct: boolean;
  /** Bytes the file held when it was taken (a spare written over), 0 for a fresh file. */
  allocated: number;
}

/**
 * Whether a record's write grows its file. ext4 serializes O_DIRECT writes
 * that grow a file (each waits for the ones in flight), and each one's
 * fdatasync commits the new size and extents: two such writes side by side
 * only queue behind each other. Measured with `test/perf/bookie-bench.ts`
 * at 128 KiB and half the max rate over fresh files, three interleaved
 * pairs: p99 8.18 / 6.15 / 6.96 ms one write at a time against 5.64 /
 * 13.93 / 16.95 with two. Over a spare (blocks already allocated) two in
 * flight stay: p50 0.05–0.1 ms lower.
 */
function growsFile(q: Queued): boolean {
  return q.offset + q.header.length + q.payload.length > q.file.allocated;
}

interface Queued {
  file: LogFile;
  offset: number;
  header: Buffer;
  payload: Buffer;
  done: Durable;
}

/**
 * The entry log of large entries, which are written once: an entry goes
 * straight to this log and is fdatasynced with its group, while the journal
 * gets only a small ADD_REF record pointing at it (the two I/Os run side by
 * side; the add is acknowledged when both are durable). The journal plus
 * entry log path writes every byte twice, which halves what one disk can
 * take at high throughput.
 *
 * A location is reserved synchronously when the add arrives, so the ADD_REF
 * record is queued in the journal in the add's own turn and keeps its order
 * against FENCE records. Writes are grouped like the journal's: what
 * arrived since the last group goes out as one write and one `fdatasync`
 * per file, up to `MAX_WRITES_IN_FLIGHT` groups side by side (an add does
 * not wait for the write ahead of it), and groups settle in order. In an
 * O_DIRECT file every group starts on a fresh block (the reservation skips
 * to the next block when a group is cut), so two writes in flight never
 * share a block and neither can overwrite the other's bytes with its
 * padding. The next file is opened ahead of need, so a roll never stalls
 * the reservation.
 *
 * After a crash, an ADD_REF whose bytes never reached the log (the file is
 * shorter than the record's end) belongs to an add that was never
 * acknowledged; replay skips it. Bytes that did land are verified on every
 * read, as all entry log records are.
 */
export class DirectLog {
  private file: LogFile | undefined;
  private next: LogFile | undefined;
  private queue: Queued[] = [];
  /** Groups cut whose writes are in progress. */
  private writing = 0;
  /** Groups written whose fdatasync is in flight or that wait for an older group to settle. */
  private syncing = 0;
  /** Settles when the newest group has: groups settle in order. */
  private previous: Promise<void> = Promise.resolve();
  private failure: Error | undefined;
  /** Appends so far, and how many of them have had their `done` run. */
  private appended = 0;
  private settled = 0;
  private barriers: { at: number; resolve: () => void }[] = [];
  /** Page-aligned memory groups are copied into for O_DIRECT writes, one per write in flight. */
  private staging: Buffer[] = [];
  /** Open new files with O_DIRECT (see `useDirectIo`). */
  private directIo = false;

  constructor(
    private readonly logs: EntryLogs,
    private readonly fileBytes: number,
    private readonly metrics: BookieMetrics,
    /** Called once when a write or sync fails (the bookie must stop taking adds). */
    private readonly onFailure: (err: Error) => void,
  ) {}

  /**
   * Write files opened from now on with O_DIRECT: a group is copied into
   * page-aligned memory and written in whole blocks, bypassing the page
   * cache. A buffered write of this log's ~80 MB/s per bookie spent more CPU
   * in the kernel's copy into the page cache than anything else a
   * three-bookie cluster on two cores did; a copy in user space and a DMA
   * cost a fraction of it. Only for a file system that takes O_DIRECT
   * (`directIoWorks`).
   */
  useDirectIo(on: boolean): void {
    this.directIo = on;
  }

  private openFile(): LogFile {
    const directIo = this.directIo;
    const { id, fh, allocated } = this.logs.create(directIo);
    // A failed open surfaces when a group awaits it; keep it from going unhandled before that.
    fh.catch(() => undefined);
    return {
      id,
      fh,
      reserved: 0,
      pendingWrites: 0,
      retired: false,
      cut: 0,
      direct: directIo,
      allocated,
    };
  }

  /**
   * Reserve where a record of `header` + `payload` goes and queue its write;
   * `done.durable` runs once it is durable or failed. The location is final.
   */
  append(header: Buffer, payload: Buffer, done: Durable): EntryLocation {
    const length = header.length + payload.length;
    let file = this.file;
    if (!file || (file.reserved > 0 && file.reserved + length > this.fileBytes)) {
      if (file) this.retire(file);
      file = this.next ?? this.openFile();
      this.file = file;
      this.next = this.openFile();
    }
    const offset = file.reserved;
    file.reserved += length;
    file.pendingWrites++;
    this.appended++;
    this.queue.push({ file, offset, header, payload, done });
    this.schedule();
    return { logId: file.id, offset, length };
  }

  private retire(file: LogFile): void {
    file.retired = true;
    if (file.pendingWrites === 0) void this.close(file);
  }

  private async close(file: LogFile): Promise<void> {
    try {
      await (await file.fh).close();
    } catch {
      // A file that failed to open has nothing to close.
    }
    this.logs.release(file.id);
  }

  private schedule(): void {
    const head = this.queue[0];
    if (
      this.writing >= (head && growsFile(head) ? 1 : MAX_WRITES_IN_FLIGHT) ||
      this.syncing >= MAX_SYNCING_GROUPS ||
      this.queue.length === 0
    ) {
      return;
    }
    this.writing++;
    setImmediate(() => this.cut());
  }

  /**
   * Cut what is queued into a group and write it. Each file's share of a
   * group is one contiguous run (reservations are sequential) that starts
   * where the previous group's run in that file was cut; an O_DIRECT file's
   * reservation then moves on to the next block.
   */
  private cut(): void {
    const group = this.queue;
    if (group.length === 0) {
      // An earlier cut in the same turn took everything.
      this.writing--;
      return;
    }
    this.queue = [];
    const runs = new Map<LogFile, Queued[]>();
    for (const q of group) {
      const run = runs.get(q.file);
      if (run) run.push(q);
      else runs.set(q.file, [q]);
    }
    let broken: Error | undefined;
    for (const [file, run] of runs) {
      const first = run[0]!;
      const last = run[run.length - 1]!;
      if (first.offset !== file.cut) {
        broken ??= new Error(
          `entry log ${file.id}: a group at ${first.offset} does not continue ${file.cut}`,
        );
      }
      const end = last.offset + recordBytes(last);
      file.cut = file.direct ? alignUp(end) : end;
      // Every record reserved in the file is in this group or an older one.
      if (file === this.file) file.reserved = file.cut;
    }
    void this.flush(group, runs, broken);
  }

  /**
   * Write one group, then sync it while later groups are written and
   * synced; groups still settle in order, so a `done` never runs before an
   * older group's.
   */
  private async flush(
    group: Queued[],
    runs: Map<LogFile, Queued[]>,
    broken: Error | undefined,
  ): Promise<void> {
    const prior = this.previous;
    let settledThis!: () => void;
    this.previous = new Promise((resolve) => {
      settledThis = resolve;
    });
    let error = this.failure ?? broken;
    const written: { file: LogFile; fh: FileHandle; end: number; bytes: number }[] = [];
    if (!error) {
      // One run at a time: a group's O_DIRECT runs share its staging memory.
      let held = this.staging.pop();
      try {
        for (const [file, run] of runs) {
          const fh = await file.fh;
          const w = await this.writeRun(file, fh, run, held);
          held = w.staging;
          written.push({ file, fh, end: w.end, bytes: w.bytes });
        }
      } catch (err) {
        error = err as Error;
      }
      if (held) this.staging.push(held);
    }
    this.writing--;
    this.syncing++;
    this.schedule();
    if (!error) {
      try {
        await Promise.all(
          written.map(async ({ fh }) => {
            const t0 = performance.now();
            await fh.datasync();
            this.metrics.entryLogSyncSeconds.observe((performance.now() - t0) / 1000);
          }),
        );
      } catch (err) {
        error = err as Error;
      }
    }
    await prior;
    this.syncing--;
    // An older group failed: this one is never acknowledged either.
    error ??= this.failure;
    if (error) {
      // Linux may drop the pages of a failed write or fdatasync: never retry,
      // fail everything queued and every later append.
      if (!this.failure) {
        this.failure = error;
        this.onFailure(error);
      }
      for (const q of group) q.done.durable(this.failure);
    } else {
      let bytes = 0;
      for (const w of written) {
        this.logs.grew(w.file.id, w.end);
        bytes += w.bytes;
      }
      this.metrics.entryLogBytes.inc(bytes);
      for (const q of group) q.done.durable(undefined);
    }
    for (const q of group) {
      if (--q.file.pendingWrites === 0 && q.file.retired) void this.close(q.file);
    }
    this.settled += group.length;
    this.barriers = this.barriers.filter((b) => {
      if (b.at > this.settled) return true;
      b.resolve();
      return false;
    });
    settledThis();
    this.schedule();
  }

  /**
   * Write a run of records that starts where its group was cut (for an
   * O_DIRECT file on a block boundary); returns the end of the records, the
   * bytes handed to the disk and the staging memory it used.
   */
  private async writeRun(
    file: LogFile,
    fh: FileHandle,
    run: Queued[],
    staging: Buffer | undefined,
  ): Promise<{ end: number; bytes: number; staging: Buffer | undefined }> {
    const at = run[0]!.offset;
    let records = 0;
    for (const q of run) records += recordBytes(q);
    const end = at + records;
    if (!file.direct) {
      const buffers: Buffer[] = [];
      for (const q of run) {
        buffers.push(q.header);
        if (q.payload.length > 0) buffers.push(q.payload);
      }
      const t0 = performance.now();
      const { bytesWritten } = await fh.writev(buffers, at);
      this.metrics.directLogWriteSeconds.observe((performance.now() - t0) / 1000);
      if (bytesWritten !== records) throw shortWrite(bytesWritten, records);
      return { end, bytes: records, staging };
    }
    // At most STAGING_BYTES of records per write (one larger record gets a
    // write of its own): a large group is not copied whole. Each write
    // continues the last, so it writes the last one's partial block again.
    let bytes = 0;
    let written = at;
    let carry = 0;
    let from = 0;
    while (from < run.length) {
      let to = from;
      let chunk = 0;
      while (to < run.length && (to === from || chunk + recordBytes(run[to]!) <= STAGING_BYTES)) {
        chunk += recordBytes(run[to]!);
        to++;
      }
      const start = written - carry;
      const length = alignUp(carry + chunk);
      if (!staging || staging.length < length) {
        const larger = allocAligned(length);
        if (staging) staging.copy(larger, 0, 0, carry);
        staging = larger;
      }
      let p = carry;
      for (let i = from; i < to; i++) {
        const q = run[i]!;
        p += q.header.copy(staging, p);
        p += q.payload.copy(staging, p);
      }
      staging.fill(0, p, length);
      const t0 = performance.now();
      const { bytesWritten } = await fh.write(staging, 0, length, start);
      this.metrics.directLogWriteSeconds.observe((performance.now() - t0) / 1000);
      if (bytesWritten !== length) throw shortWrite(bytesWritten, length);
      bytes += length;
      written += chunk;
      // The partial block at the end goes to the front for the next write.
      const keep = alignDown(p);
      carry = p - keep;
      staging.copy(staging, 0, keep, p);
      from = to;
    }
    return { end, bytes, staging };
  }

  /**
   * Resolves once every append made before the call has had its `done` run
   * (durable or failed), however busy the log stays afterwards. A
   * checkpoint waits for it: an ADD_REF record before the checkpoint's
   * journal position may name an entry whose write is still in flight, and
   * that entry must be applied (indexed) before the checkpoint lets replay
   * skip its record.
   */
  barrier(): Promise<void> {
    if (this.settled >= this.appended) return Promise.resolve();
    return new Promise((resolve) => this.barriers.push({ at: this.appended, resolve }));
  }

  /** Finish queued writes and close the files. */
  async closeAll(): Promise<void> {
    await this.barrier();
    for (const f of [this.file, this.next]) if (f) await this.close(f);
    this.file = undefined;
    this.next = undefined;
  }
}
