/**
 * Protobuf wire primitives and the pieces of bookie.proto (Entry,
 * EntryStatus) shared by the hand-written BookieService codecs
 * (add-entries-codec.ts, read-entries-codec.ts). Not part of the package's
 * public surface.
 */

/** Entry fields as the data path holds them (ids are below 2^53). */
export interface EntryFields {
  ledgerId: number;
  entryId: number;
  /** LAC known to the writer (-1: none). */
  lac: number;
  crc32c: number;
  ledgerLength: number;
}

/** One decoded Entry; payload is a slice of the received message. */
export interface DecodedEntry extends EntryFields {
  payload: Buffer;
}

/** sluice.v1.EntryStatus by name, as grpc-js (enums: String) and the bookie use them. */
export type EntryStatusWireName =
  | 'ENTRY_STATUS_UNSPECIFIED'
  | 'ENTRY_STATUS_OK'
  | 'ENTRY_STATUS_FENCED'
  | 'ENTRY_STATUS_NO_ENTRY'
  | 'ENTRY_STATUS_NO_LEDGER'
  | 'ENTRY_STATUS_CORRUPT'
  | 'ENTRY_STATUS_INVALID'
  | 'ENTRY_STATUS_READ_ONLY'
  | 'ENTRY_STATUS_IO_ERROR';

export const STATUS_NAMES: readonly EntryStatusWireName[] = [
  'ENTRY_STATUS_UNSPECIFIED',
  'ENTRY_STATUS_OK',
  'ENTRY_STATUS_FENCED',
  'ENTRY_STATUS_NO_ENTRY',
  'ENTRY_STATUS_NO_LEDGER',
  'ENTRY_STATUS_CORRUPT',
  'ENTRY_STATUS_INVALID',
  'ENTRY_STATUS_READ_ONLY',
  'ENTRY_STATUS_IO_ERROR',
];
export const STATUS_NUMBERS = new Map<string, number>(STATUS_NAMES.map((n, i) => [n, i]));

export const WIRE_VARINT = 0;
export const WIRE_I64 = 1;
export const WIRE_LEN = 2;
export const WIRE_I32 = 5;
export const TWO_32 = 4294967296;

/** Bytes of `n` (a safe integer) as a protobuf int64 varint (negative numbers take 10). */
export function int64Size(n: number): number {
  if (n < 0) return 10;
  if (n < TWO_32) return uint32Size(n);
  // n >= 2^32: 5 bytes carry the low 35 bits, the rest 7 bits each
  // (epoch-ms timestamps, one per message, land here: no division loop).
  const hi = Math.floor(n / 0x800000000);
  return hi === 0 ? 5 : hi < 0x80 ? 6 : hi < 0x4000 ? 7 : hi < 0x200000 ? 8 : hi < 0x10000000 ? 9 : 10;
}

export function uint32Size(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
}

export function checkId(what: string, n: number): void {
  if (!Number.isSafeInteger(n)) {
    throw new RangeError(`${what} ${n} is not an integer below 2^53; ids and lengths must be safe integers`);
  }
}

/** Writes `n` (a safe integer, possibly negative) as an int64 varint; returns the next offset. */
export function writeInt64(buf: Buffer, o: number, n: number): number {
  if (n >= 0 && n < TWO_32) {
    let v = n;
    while (v >= 128) {
      buf[o++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    buf[o++] = v;
    return o;
  }
  // Split into the two 32-bit halves of its 64-bit two's complement.
  let hi = Math.floor(n / TWO_32);
  let lo = n - hi * TWO_32;
  hi >>>= 0;
  lo >>>= 0;
  while (hi > 0 || lo >= 128) {
    buf[o++] = (lo & 0x7f) | 0x80;
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  buf[o++] = lo;
  return o;
}

export function writeUint32(buf: Buffer, o: number, n: number): number {
  while (n >= 128) {
    buf[o++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[o++] = n;
  return o;
}

/** An integer in int64 range: what protobufjs would put on the wire for a number. */
export function wireInt64(n: number): number {
  if (!Number.isFinite(n)) return 0;
  const t = Math.trunc(n);
  return t >= 2 ** 63 || t < -(2 ** 63) ? 0 : t;
}

export function statusNumber(s: EntryStatusWireName | number): number {
  if (typeof s === 'number') return s >>> 0;
  const n = STATUS_NUMBERS.get(s);
  if (n === undefined) throw new RangeError(`unknown entry status '${s}'; use an ENTRY_STATUS_* name`);
  return n;
}

/** Cursor over one protobuf message; throws RangeError on malformed input. */
export class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  uint32(): number {
    let result = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const b = this.byte();
      // Bits above 32 are dropped, as protobuf does for uint32 fields.
      if (shift < 32) result |= (b & 0x7f) << shift;
      if (b < 0x80) return result >>> 0;
    }
    return this.skipVarintTail(result >>> 0);
  }

  /** An int64 varint as a number (exact below 2^53, like protobufjs with longs: Number). */
  int64(): number {
    let lo = 0;
    let hi = 0;
    let b = 0;
    for (let i = 0; i < 4; i++) {
      b = this.byte();
      lo = (lo | ((b & 0x7f) << (i * 7))) >>> 0;
      if (b < 0x80) return lo;
    }
    b = this.byte();
    lo = (lo | ((b & 0x7f) << 28)) >>> 0;
    hi = (b & 0x7f) >> 4;
    if (b >= 0x80) {
      for (let i = 0; i < 5; i++) {
        b = this.byte();
        hi = (hi | ((b & 0x7f) << (i * 7 + 3))) >>> 0;
        if (b < 0x80) break;
        if (i === 4) throw new RangeError('varint longer than 10 bytes');
      }
    }
    return (hi | 0) * TWO_32 + lo;
  }

  fixed32(): number {
    if (this.pos + 4 > this.end) throw new RangeError('fixed32 runs past the end of the message');
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  /** [start, end) of a length-delimited field's bytes. */
  lengthDelimited(): number {
    const len = this.uint32();
    const start = this.pos;
    if (start + len > this.end)
      throw new RangeError('length-delimited field runs past the end of the message');
    this.pos = start + len;
    return start;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case WIRE_VARINT:
        this.int64();
        return;
      case WIRE_I64:
        this.advance(8);
        return;
      case WIRE_LEN:
        this.lengthDelimited();
        return;
      case WIRE_I32:
        this.advance(4);
        return;
      default:
        throw new RangeError(`unsupported wire type ${wireType}`);
    }
  }

  private advance(n: number): void {
    if (this.pos + n > this.end) throw new RangeError('field runs past the end of the message');
    this.pos += n;
  }

  private byte(): number {
    if (this.pos >= this.end) throw new RangeError('varint runs past the end of the message');
    return this.buf[this.pos++] as number;
  }

  private skipVarintTail(result: number): number {
    for (let i = 0; i < 5; i++) if (this.byte() < 0x80) return result;
    throw new RangeError('varint longer than 10 bytes');
  }
}

/** Decodes one Entry message in buf[start, end); the payload is a slice of `buf`. */
export function decodeEntry(buf: Buffer, start: number, end: number): DecodedEntry {
  const r = new Reader(buf, start, end);
  let ledgerId = 0;
  let entryId = 0;
  let lac = 0;
  let crc = 0;
  let ledgerLength = 0;
  let payloadStart = 0;
  let payloadEnd = 0;
  while (!r.done) {
    const tag = r.uint32();
    const wt = tag & 7;
    switch (tag >>> 3) {
      case 1:
        if (wt !== WIRE_VARINT) break;
        ledgerId = r.int64();
        continue;
      case 2:
        if (wt !== WIRE_VARINT) break;
        entryId = r.int64();
        continue;
      case 3:
        if (wt !== WIRE_VARINT) break;
        lac = r.int64();
        continue;
      case 4:
        if (wt !== WIRE_LEN) break;
        payloadStart = r.lengthDelimited();
        payloadEnd = r.pos;
        continue;
      case 5:
        if (wt !== WIRE_I32) break;
        crc = r.fixed32();
        continue;
      case 6:
        if (wt !== WIRE_VARINT) break;
        ledgerLength = r.int64();
        continue;
    }
    r.skip(wt);
  }
  return {
    ledgerId,
    entryId,
    lac,
    crc32c: crc,
    ledgerLength,
    payload: buf.subarray(payloadStart, payloadEnd),
  };
}
