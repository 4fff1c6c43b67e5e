import { type FileHandle, mkdir, open, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '@sluice/common';
import { fsyncDir } from './fs-util.js';
import { decodeRecord, encodeRecordHeader, type JournalRecord } from './journal-record.js';
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
  sync: boolean;
  maxRecordBytes: number;
  logger: Logger;
  metrics: BookieMetrics;
}

/**
 * Called once the record is durable (err undefined) or can never be (err set).
 * Callbacks of one group run synchronously in append order, before the
 * journal's synced position moves past them, so a checkpoint that reads
 * `syncedPosition` never claims a record whose callback has not run.
 */
export type DurableCallback = (err: Error | undefined) => void;

interface Pending {
  buffers: Buffer[];
  bytes: number;
  done: DurableCallback;
}

const FILE_RE = /^journal-(\d{16})\.log$/;
const fileName = (id: number) => `journal-${String(id).padStart(16, '0')}.log`;

/**
 * The write-ahead log. Adds are group-committed: while one write + fdatasync
 * is in flight the next group gathers, and an idle journal waits at most
 * `groupWaitMs` (or until `groupBytes` are pending) before writing. A failed
 * write or fdatasync poisons the journal for good: after a failed fsync Linux
 * may have dropped the dirty pages, so retrying could ack data that is gone.
 */
export class Journal {
  private fh: FileHandle | undefined;
  private fileId = 0;
  private offset = 0;
  private pending: Pending[] = [];
  private pendingBytes = 0;
  private writing = false;
  private timer: NodeJS.Timeout | undefined;
  private failure: Error | undefined;
  private closed = false;
  private idleWaiters: (() => void)[] = [];
  /** Everything before this position is durable and its callbacks have run. */
  syncedPosition: JournalPosition = { fileId: 0, offset: 0 };

  constructor(private readonly opts: JournalOptions) {}

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
          const res = decodeRecord(buf, rel, this.opts.maxRecordBytes);
          if (res.ok) {
            pos += res.size;
            count++;
            await onRecord(res.record, { fileId: id, offset: pos });
            continue;
          }
          if (res.reason === 'short' && bufStart + buf.length < size) {
            const need = Math.max(4 * 1024 * 1024, this.opts.maxRecordBytes + 64);
            const chunk = Buffer.allocUnsafe(Math.min(need, size - (bufStart + buf.length)));
            const { bytesRead } = await fh.read(chunk, 0, chunk.length, bufStart + buf.length);
            buf = Buffer.concat([buf.subarray(rel), chunk.subarray(0, bytesRead)]);
            bufStart = pos;
            continue;
          }
          if (pos < size) {
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
    await this.openFile((ids.at(-1) ?? 0) + 1);
  }

  private async openFile(id: number): Promise<void> {
    const fh = await open(join(this.opts.dir, fileName(id)), 'wx');
    await fsyncDir(this.opts.dir);
    const old = this.fh;
    this.fh = fh;
    this.fileId = id;
    this.offset = 0;
    this.syncedPosition = { fileId: id, offset: 0 };
    await old?.close();
  }

  /** Queue a record; `done` runs once it is durable or failed. */
  append(rec: JournalRecord, done: DurableCallback): void {
    if (this.failure) {
      done(this.failure);
      return;
    }
    if (this.closed || !this.fh) {
      done(new Error('journal is closed'));
      return;
    }
    const header = encodeRecordHeader(rec, rec.payload.length);
    const buffers = rec.payload.length > 0 ? [header, rec.payload] : [header];
    const bytes = header.length + rec.payload.length;
    this.pending.push({ buffers, bytes, done });
    this.pendingBytes += bytes;
    this.opts.metrics.journalQueue.set(this.pending.length);
    this.schedule();
  }

  private schedule(): void {
    if (this.writing || this.pending.length === 0) return;
    if (this.pendingBytes >= this.opts.groupBytes || this.opts.groupWaitMs <= 0) {
      this.clearTimer();
      void this.flush();
      return;
    }
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.opts.groupWaitMs);
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async flush(): Promise<void> {
    if (this.writing || this.pending.length === 0) return;
    this.writing = true;
    this.clearTimer();
    const group = this.pending;
    const bytes = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    this.opts.metrics.journalQueue.set(0);
    try {
      if (this.offset > 0 && this.offset + bytes > this.opts.fileBytes) await this.openFile(this.fileId + 1);
      const fh = this.fh!;
      const buffers: Buffer[] = [];
      for (const p of group) for (const b of p.buffers) buffers.push(b);
      const { bytesWritten } = await fh.writev(buffers, this.offset);
      if (bytesWritten !== bytes) {
        throw Object.assign(
          new Error(`short journal write: ${bytesWritten} of ${bytes} bytes (disk full?)`),
          {
            code: 'ENOSPC',
          },
        );
      }
      if (this.opts.sync) {
        const t0 = process.hrtime.bigint();
        await fh.datasync();
        this.opts.metrics.journalFsyncSeconds.observe(Number(process.hrtime.bigint() - t0) / 1e9);
      }
      this.offset += bytes;
      this.opts.metrics.journalGroupBytes.observe(bytes);
      this.opts.metrics.journalGroupRecords.observe(group.length);
      this.opts.metrics.journalBytes.inc(bytes);
      for (const p of group) p.done(undefined);
      this.syncedPosition = { fileId: this.fileId, offset: this.offset };
    } catch (err) {
      this.fail(err as Error, group);
    } finally {
      this.writing = false;
      if (this.failure) this.fail(this.failure, []);
      else this.schedule();
      if (!this.writing && this.pending.length === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private fail(err: Error, group: Pending[]): void {
    if (!this.failure) {
      this.failure = err;
      this.opts.logger.error(
        { err },
        'journal write or fsync failed; this bookie accepts no more adds until restarted',
      );
    }
    const rest = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    for (const p of [...group, ...rest]) p.done(this.failure);
  }

  /** Resolves once nothing is queued or in flight. */
  idle(): Promise<void> {
    if (!this.writing && this.pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Delete journal files whose every record lies before `pos` (never the current file). */
  async deleteBefore(pos: JournalPosition): Promise<number> {
    let deleted = 0;
    for (const id of await this.listFileIds()) {
      if (id < pos.fileId && id !== this.fileId) {
        await unlink(join(this.opts.dir, fileName(id)));
        deleted++;
      }
    }
    return deleted;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.idle();
    this.clearTimer();
    await this.fh?.close();
    this.fh = undefined;
  }
}
