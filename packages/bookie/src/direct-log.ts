import type { FileHandle } from 'node:fs/promises';
import { alignDown, alignUp, allocAligned, DIRECT_IO_ALIGN } from './direct-io.js';
import type { Durable } from './durable.js';
import { type EntryLocation, type EntryLogs, shortWrite } from './entry-log.js';
import type { BookieMetrics } from './metrics.js';

/** Groups whose fdatasync may be in flight at once (one syncing while the next is written and synced). */
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
  /** Groups still to be written to this file, oldest first. */
  pendingWrites: number;
  retired: boolean;
  /** End of the bytes written so far. */
  written: number;
  /**
   * Set when the file was opened with O_DIRECT (writes then go out aligned
   * from `DirectLog.staging`): a copy of its last partial block, `written`
   * modulo the alignment.
   */
  tail: Buffer | undefined;
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
 * against FENCE records. Writes are grouped like the journal's: while one
 * group is being written the next gathers, then goes out as one `writev`
 * and one `fdatasync` per file, the `writev` overlapping the previous
 * group's fdatasync. The next file is opened ahead of need, so a roll never
 * stalls the reservation.
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
  /** A group's `writev` is in progress (the next group waits for it). */
  private writing = false;
  /** Groups written whose fdatasync is in flight or that wait for an older group to settle. */
  private syncing = 0;
  /** Settles when the newest group has: groups settle in order. */
  private previous: Promise<void> = Promise.resolve();
  private failure: Error | undefined;
  /** Appends so far, and how many of them have had their `done` run. */
  private appended = 0;
  private settled = 0;
  private barriers: { at: number; resolve: () => void }[] = [];
  /** Page-aligned memory a group is copied into for an O_DIRECT write. */
  private staging: Buffer | undefined;
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
    const { id, fh } = this.logs.create(directIo);
    // A failed open surfaces when a group awaits it; keep it from going unhandled before that.
    fh.catch(() => undefined);
    return {
      id,
      fh,
      reserved: 0,
      pendingWrites: 0,
      retired: false,
      written: 0,
      tail: directIo ? Buffer.alloc(DIRECT_IO_ALIGN) : undefined,
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
    if (this.writing || this.syncing >= MAX_SYNCING_GROUPS || this.queue.length === 0) return;
    this.writing = true;
    setImmediate(() => void this.flush());
  }

  /**
   * Write one group, then let the next group's `writev` run while this
   * one's fdatasync is in flight (copying into the page cache overlaps the
   * disk's work); groups still settle in order, so a `done` never runs
   * before an older group's.
   */
  private async flush(): Promise<void> {
    const group = this.queue;
    this.queue = [];
    const prior = this.previous;
    let settledThis!: () => void;
    this.previous = new Promise((resolve) => {
      settledThis = resolve;
    });
    let error = this.failure;
    const written: { file: LogFile; fh: FileHandle; end: number; bytes: number }[] = [];
    if (!error) {
      try {
        // Reservations are sequential, so each file's share is one contiguous run.
        const runs = new Map<LogFile, Queued[]>();
        for (const q of group) {
          const run = runs.get(q.file);
          if (run) run.push(q);
          else runs.set(q.file, [q]);
        }
        // One run at a time: O_DIRECT runs share the staging memory.
        for (const [file, run] of runs) {
          const fh = await file.fh;
          written.push({ file, fh, ...(await this.writeRun(file, fh, run)) });
        }
      } catch (err) {
        error = err as Error;
      }
    }
    this.writing = false;
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
   * Write a run of records that continues `file` where its last write
   * ended; returns the end of the records and the bytes handed to the disk.
   */
  private async writeRun(
    file: LogFile,
    fh: FileHandle,
    run: Queued[],
  ): Promise<{ end: number; bytes: number }> {
    const at = run[0]!.offset;
    if (at !== file.written)
      throw new Error(`entry log ${file.id}: write at ${at} does not continue ${file.written}`);
    let records = 0;
    for (const q of run) records += recordBytes(q);
    const end = at + records;
    let bytes = records;
    if (file.tail) {
      // At most STAGING_BYTES per write (one larger record gets a write of
      // its own): a large group is not copied whole.
      bytes = 0;
      let from = 0;
      while (from < run.length) {
        let to = from;
        let chunk = 0;
        while (to < run.length && (to === from || chunk + recordBytes(run[to]!) <= STAGING_BYTES)) {
          chunk += recordBytes(run[to]!);
          to++;
        }
        bytes += await this.writeDirect(file, file.tail, fh, run.slice(from, to), chunk);
        from = to;
      }
    } else {
      const buffers: Buffer[] = [];
      for (const q of run) {
        buffers.push(q.header);
        if (q.payload.length > 0) buffers.push(q.payload);
      }
      const { bytesWritten } = await fh.writev(buffers, at);
      if (bytesWritten !== bytes) throw shortWrite(bytesWritten, bytes);
      file.written = end;
    }
    return { end, bytes };
  }

  /**
   * Write records that continue `file` at `file.written` with O_DIRECT, in
   * whole blocks from the one holding that offset: the start of that block
   * (the end of earlier records) is written again with the same bytes, and
   * the last block is padded with zeros that the next write overwrites.
   * Returns the bytes handed to the disk.
   */
  private async writeDirect(
    file: LogFile,
    tail: Buffer,
    fh: FileHandle,
    records: Queued[],
    length: number,
  ): Promise<number> {
    const at = file.written;
    const end = at + length;
    const start = alignDown(at);
    const bytes = alignUp(end) - start;
    if (!this.staging || this.staging.length < bytes) this.staging = allocAligned(bytes);
    const buf = this.staging;
    let p = tail.copy(buf, 0, 0, at - start);
    for (const q of records) {
      p += q.header.copy(buf, p);
      p += q.payload.copy(buf, p);
    }
    buf.fill(0, p, bytes);
    const { bytesWritten } = await fh.write(buf, 0, bytes, start);
    if (bytesWritten !== bytes) throw shortWrite(bytesWritten, bytes);
    buf.copy(tail, 0, alignDown(end) - start, end - start);
    file.written = end;
    return bytes;
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
