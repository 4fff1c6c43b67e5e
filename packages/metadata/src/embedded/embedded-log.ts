import {
  closeSync,
  existsSync,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { CorruptDataError, crc32c, type Logger } from '@sluice/common';

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

  /** Durably append one record (returns after fdatasync). */
  append(rec: LogRecord): void {
    const payload = Buffer.from(
      JSON.stringify({
        r: rec.revision,
        p: rec.puts.map((p) => [p.key, p.value.toString('base64'), p.createRevision]),
        d: rec.deletes,
      }),
    );
    const frame = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
    frame.writeUInt32LE(payload.length, 0);
    frame.writeUInt32LE(crc32c(payload), 4);
    payload.copy(frame, HEADER_BYTES);
    writeAll(this.fd, frame);
    fdatasyncSync(this.fd);
    this.logBytes += frame.length;
  }

  get needsSnapshot(): boolean {
    return this.logBytes >= this.snapshotThresholdBytes;
  }

  /** Write a snapshot of every persistent key, then start an empty log. */
  snapshot(revision: number, keys: Iterable<StoredKey>): void {
    const rows: [string, string, number, number][] = [];
    for (const k of keys) rows.push([k.key, k.value.toString('base64'), k.createRevision, k.modRevision]);
    const payload = Buffer.from(JSON.stringify({ revision, keys: rows }));
    const frame = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
    frame.writeUInt32LE(payload.length, 0);
    frame.writeUInt32LE(crc32c(payload), 4);
    payload.copy(frame, HEADER_BYTES);
    const tmp = join(this.dir, `${SNAPSHOT}.tmp`);
    const tfd = openSync(tmp, 'w');
    try {
      writeAll(tfd, frame);
      fsyncSync(tfd);
    } finally {
      closeSync(tfd);
    }
    renameSync(tmp, join(this.dir, SNAPSHOT));
    syncDir(this.dir);
    // The snapshot now covers every record in the log, so the log can restart
    // empty; a crash between rename and truncate only replays skipped records.
    ftruncateSync(this.fd, 0);
    fsyncSync(this.fd);
    this.logBytes = 0;
    this.log.debug({ revision, bytes: frame.length }, 'metadata snapshot written');
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

function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}

function syncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
