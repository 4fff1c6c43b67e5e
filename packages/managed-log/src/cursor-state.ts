import { promisify } from 'node:util';
import { deflateRaw, inflateRaw } from 'node:zlib';
import { CorruptDataError, type Position } from '@sluice/common';
import { AckSet } from './ack-set.js';
import { VarintReader, VarintWriter } from './varint.js';

/** Acknowledged members of one partly acknowledged batch entry. */
export interface BatchAcks {
  size: number;
  /** Bit i set = message i acknowledged. */
  bits: Uint8Array;
  acked: number;
}

/** Everything a cursor persists. */
export interface CursorState {
  markDelete: Position;
  acks: AckSet;
  /** Keyed by `${ledgerId}:${entryId}`. */
  batches: Map<string, BatchAcks & Position>;
}

const FORMAT = 1;
const RAW = 0;
const DEFLATE = 1;
/** Below this size compression costs more than it saves. */
const COMPRESS_ABOVE = 512;
/**
 * Large cursor states take tens of milliseconds to (de)compress: zlib's
 * thread pool keeps that off the event loop the broker's hot path runs on.
 */
const deflateRawAsync = promisify(deflateRaw);
const inflateRawAsync = promisify(inflateRaw);

/**
 * Binary form: markDelete, then per ledger (ascending, delta-coded id) its
 * acknowledged runs as (gap from previous end, length) varints, then the
 * partly acknowledged batches with their bitsets. Deflated when large, so a
 * cursor with 100k scattered acks persists in a few hundred KB at most.
 * The state is read synchronously, before the first await, so later acks
 * do not leak into a record already being encoded.
 */
export async function encodeCursorState(state: CursorState): Promise<Buffer> {
  const w = new VarintWriter();
  w.uint(FORMAT).uint(state.markDelete.ledgerId).int(state.markDelete.entryId);
  const ledgers = state.acks.ledgerIds();
  w.uint(ledgers.length);
  let prevLedger = 0;
  for (const ledgerId of ledgers) {
    w.uint(ledgerId - prevLedger).uint(state.acks.rangeCountOf(ledgerId));
    prevLedger = ledgerId;
    let prevEnd = -1;
    state.acks.visitRuns(ledgerId, (a, b) => {
      w.uint(a - prevEnd - 1).uint(b - a);
      prevEnd = b;
    });
  }
  const batches = [...state.batches.values()].sort(
    (a, b) => a.ledgerId - b.ledgerId || a.entryId - b.entryId,
  );
  w.uint(batches.length);
  for (const b of batches) {
    w.uint(b.ledgerId).uint(b.entryId).uint(b.size).bytes(b.bits);
  }
  const raw = w.finish();
  if (raw.length <= COMPRESS_ABOVE) return Buffer.concat([Buffer.from([RAW]), raw]);
  return Buffer.concat([Buffer.from([DEFLATE]), await deflateRawAsync(raw, { level: 1 })]);
}

export async function decodeCursorState(buf: Buffer, what: string): Promise<CursorState> {
  if (buf.length < 1) throw new CorruptDataError(`${what} is empty`);
  let raw: Buffer;
  if (buf[0] === RAW) raw = buf.subarray(1);
  else if (buf[0] === DEFLATE) {
    try {
      raw = await inflateRawAsync(buf.subarray(1));
    } catch (err) {
      throw new CorruptDataError(`${what} does not inflate`, { cause: err });
    }
  } else throw new CorruptDataError(`${what} has unknown codec ${buf[0]}`);
  const r = new VarintReader(raw, what);
  const format = r.uint();
  if (format !== FORMAT) throw new CorruptDataError(`${what} has unknown format ${format}`);
  const markDelete = { ledgerId: r.uint(), entryId: r.int() };
  const acks = new AckSet();
  const nLedgers = r.uint();
  let ledgerId = 0;
  for (let i = 0; i < nLedgers; i++) {
    ledgerId += r.uint();
    const nRuns = r.uint();
    let prevEnd = -1;
    for (let j = 0; j < nRuns; j++) {
      const a = prevEnd + 1 + r.uint();
      const b = a + r.uint();
      acks.addRange(ledgerId, a, b);
      prevEnd = b;
    }
  }
  const batches = new Map<string, BatchAcks & Position>();
  const nBatches = r.uint();
  for (let i = 0; i < nBatches; i++) {
    const l = r.uint();
    const e = r.uint();
    const size = r.uint();
    const bits = new Uint8Array(r.bytes(Math.ceil(size / 8)));
    let acked = 0;
    for (let k = 0; k < size; k++) if (bits[k >> 3]! & (1 << (k & 7))) acked++;
    batches.set(`${l}:${e}`, { ledgerId: l, entryId: e, size, bits, acked });
  }
  return { markDelete, acks, batches };
}

/**
 * A state record in the cursor ledger may span several entries (a ledger
 * entry has a size limit). Each entry: magic, seq, chunk index, chunk count,
 * then the chunk. Recovery uses the last record whose chunks are all there.
 */
const MAGIC = 0x5343; // 'SC'
const HEADER = 2 + 8 + 4 + 4;
export const MAX_CHUNK_BYTES = 1024 * 1024;

export function chunkRecord(seq: number, state: Buffer): Buffer[] {
  const count = Math.max(1, Math.ceil(state.length / MAX_CHUNK_BYTES));
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const body = state.subarray(i * MAX_CHUNK_BYTES, (i + 1) * MAX_CHUNK_BYTES);
    const head = Buffer.alloc(HEADER);
    head.writeUInt16BE(MAGIC, 0);
    head.writeDoubleBE(seq, 2);
    head.writeUInt32BE(i, 10);
    head.writeUInt32BE(count, 14);
    out.push(Buffer.concat([head, body]));
  }
  return out;
}

export interface Chunk {
  seq: number;
  index: number;
  count: number;
  body: Buffer;
}

export function parseChunk(entry: Buffer, what: string): Chunk {
  if (entry.length < HEADER || entry.readUInt16BE(0) !== MAGIC) {
    throw new CorruptDataError(`${what} is not a cursor state record`);
  }
  return {
    seq: entry.readDoubleBE(2),
    index: entry.readUInt32BE(10),
    count: entry.readUInt32BE(14),
    body: entry.subarray(HEADER),
  };
}
