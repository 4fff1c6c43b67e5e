import {
  closeSync,
  existsSync,
  fdatasync,
  fstatSync,
  fsync,
  fsyncSync,
  ftruncate,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  writev,
} from 'node:fs';
import { join } from 'node:path';
import { CorruptDataError, crc32c, type Logger, writeFileAtomic } from '@sluice/common';

/** A persistent key as stored on disk. */
export interface StoredKey {
  key: string;
  value: Buffer;
  createRevision: number;
  modRevision: number;
}

/** One committed transaction: its revision and its effect on persistent keys. */
export interface LogRecord {
  revision: number;
  puts: { key: string; value: Buffer; createRevision: number }[];
  deletes: string[];
}

export interface RecoveredState {
  revision: number;
  keys: StoredKey[];
}

const HEADER_BYTES = 8;
const SNAPSHOT = 'snapshot';
const LOG = 'txn.log';

/**
 * Durability of the embedded store: an append-only log of committed txns,
 * each record framed as [length u32][crc32c u32][JSON], fdatasynced before the
 * txn is acknowledged, plus a snapshot written atomically (tmp + fsync +
 * rename) when the log grows past a threshold. A torn or corrupt record at the
 * log's tail (a crash mid-append) ends replay and is cut off; nothing after it
 * was ever acknowledged.
 *
 * Writes run on libuv's thread pool, never on the event loop: the store
 * gathers the records committed while one write is in flight and appends them
 * with one writev and one fdatasync (group commit). Calls must not overlap:
 * the store issues the next `append` or `snapshot` only after the last ended.
 */
export class EmbeddedLog {
  private fd: number;
  private logBytes: number;

  private constructor(
    private readonly dir: string,
    fd: number,
    logBytes: number,
    private readonly snapshotThresholdBytes: number,
    private readonly log: Logger,
  ) {
    this.fd = fd;
    this.logBytes = logBytes;
  }

  static open(
    dir: string,
    opts: { snapshotThresholdBytes: number; logger: Logger },
  ): { log: EmbeddedLog; state: RecoveredState } {
    mkdirSync(dir, { recursive: true });
    const keys = new Map<string, StoredKey>();
    let revision = 0;
    const snapPath = join(dir, SNAPSHOT);
    if (existsSync(snapPath)) {
      const buf = readFileSync(snapPath);
      const { records } = readFrames(buf);
      const snap = records[0];
      if (!snap || records.length !== 1) {
        throw new CorruptDataError(
          `metadata snapshot ${snapPath} is damaged; restore the data dir from a backup`,
        );
      }
      const parsed = JSON.parse(snap.toString('utf8')) as {
        revision: number;
        keys: [string, string, number, number][];
      };
      revision = parsed.revision;
      for (const [key, value, createRevision, modRevision] of parsed.keys) {
        keys.set(key, { key, value: Buffer.from(value, 'base64'), createRevision, modRevision });
      }
    }
    const logPath = join(dir, LOG);
    const fd = openSync(logPath, 'a+');
    const buf = readFileSync(logPath);
    const { records, goodBytes } = readFrames(buf);
    if (goodBytes < buf.length) {
      opts.logger.warn(
        { logPath, goodBytes, fileBytes: buf.length },
        'metadata log has a torn tail; truncating it',
      );
      ftruncateSync(fd, goodBytes);
      fsyncSync(fd);
    }
    for (const raw of records) {
      const rec = decodeRecord(raw);
      if (rec.revision <= revision) continue;
      revision = rec.revision;
      for (const key of rec.deletes) keys.delete(key);
      for (const p of rec.puts) {
        keys.set(p.key, {
          key: p.key,
          value: p.value,
          createRevision: p.createRevision,
          modRevision: rec.revision,
        });
      }
    }
    const log = new EmbeddedLog(dir, fd, goodBytes, opts.snapshotThresholdBytes, opts.logger);
    return { log, state: { revision, keys: [...keys.values()] } };
  }

  /** Frame one record for `append`. */
  static encode(rec: LogRecord): Buffer {
    return frame(
      JSON.stringify({
        r: rec.revision,
        p: rec.puts.map((p) => [p.key, p.value.toString('base64'), p.createRevision]),
        d: rec.deletes,
      }),
    );
  }

  /** Durably append framed records: one writev, one fdatasync. */
  async append(frames: Buffer[]): Promise<void> {
    const fd = this.fd;
    let bytes = 0;
    for (const f of frames) bytes += f.length;
    await writevAll(fd, frames, bytes);
    await new Promise<void>((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));
    this.logBytes += bytes;
  }

  get needsSnapshot(): boolean {
    return this.logBytes >= this.snapshotThresholdBytes;
  }

  /** Write a snapshot of every persistent key, then start an empty log. */
  async snapshot(revision: number, keys: Iterable<StoredKey>): Promise<void> {
    const rows: [string, string, number, number][] = [];
    for (const k of keys) rows.push([k.key, k.value.toString('base64'), k.createRevision, k.modRevision]);
    const data = frame(JSON.stringify({ revision, keys: rows }));
    await writeFileAtomic(join(this.dir, SNAPSHOT), data);
    // The snapshot now covers every record in the log, so the log can restart
    // empty; a crash between rename and truncate only replays skipped records.
    const fd = this.fd;
    await new Promise<void>((resolve, reject) =>
      ftruncate(fd, 0, (err) => (err ? reject(err) : fsync(fd, (e) => (e ? reject(e) : resolve())))),
    );
    this.logBytes = 0;
    this.log.debug({ revision, bytes: data.length }, 'metadata snapshot written');
  }

  close(): void {
    if (this.fd < 0) return;
    closeSync(this.fd);
    this.fd = -1;
  }

  /** Bytes in the log file now (for tests and metrics). */
  get size(): number {
    return this.fd < 0 ? 0 : fstatSync(this.fd).size;
  }
}

function readFrames(buf: Buffer): { records: Buffer[]; goodBytes: number } {
  const records: Buffer[] = [];
  let off = 0;
  while (off + HEADER_BYTES <= buf.length) {
    const len = buf.readUInt32LE(off);
    const crc = buf.readUInt32LE(off + 4);
    const end = off + HEADER_BYTES + len;
    if (end > buf.length) break;
    const payload = buf.subarray(off + HEADER_BYTES, end);
    if (crc32c(payload) !== crc) break;
    records.push(payload);
    off = end;
  }
  return { records, goodBytes: off };
}

function decodeRecord(raw: Buffer): LogRecord {
  const o = JSON.parse(raw.toString('utf8')) as { r: number; p: [string, string, number][]; d: string[] };
  return {
    revision: o.r,
    puts: o.p.map(([key, value, createRevision]) => ({
      key,
      value: Buffer.from(value, 'base64'),
      createRevision,
    })),
    deletes: o.d,
  };
}

function frame(json: string): Buffer {
  const payload = Buffer.from(json);
  const out = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  out.writeUInt32LE(payload.length, 0);
  out.writeUInt32LE(crc32c(payload), 4);
  payload.copy(out, HEADER_BYTES);
  return out;
}

/** writev until every byte is written (a short write resumes mid-buffer). */
async function writevAll(fd: number, bufs: Buffer[], total: number): Promise<void> {
  let rest = bufs;
  let left = total;
  while (left > 0) {
    const n = await new Promise<number>((resolve, reject) =>
      writev(fd, rest, (err, written) => (err ? reject(err) : resolve(written))),
    );
    left -= n;
    let skip = n;
    while (skip > 0 && rest.length > 0) {
      const head = rest[0] as Buffer;
      if (head.length <= skip) {
        skip -= head.length;
        rest = rest.slice(1);
      } else {
        rest = [head.subarray(skip), ...rest.slice(1)];
        skip = 0;
      }
    }
  }
}
