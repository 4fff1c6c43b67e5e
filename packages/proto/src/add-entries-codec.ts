/**
 * Hand-written wire codec for the AddEntries stream of sluice.v1.BookieService
 * (AddEntriesRequest / AddEntriesResponse in bookie.proto, which stays the
 * contract). It exists for the write hot path only:
 *
 * - a writer replicates each entry to Qw bookies. protobufjs re-encoded the
 *   entry (and copied its payload) once per bookie; here the entry's fields
 *   are encoded once into a small head (`EncodedEntry`) and every bookie's
 *   request reuses that head and the payload part Buffers as they are;
 * - a bookie decodes a request into plain entries whose payloads are slices
 *   of the received message, without protobufjs objects per entry.
 *
 * Fields are written in the order 1, 2, 3, 5, 6, 4 (payload last, so that the
 * head is one contiguous prefix); protobuf parsers accept any field order.
 * Decoders accept any order, skip unknown fields and, for repeated scalars,
 * keep the last value, as protobuf requires.
 */

/** Entry fields as the write path holds them (ids are below 2^53). */
export interface AddEntryFields {
  ledgerId: number;
  entryId: number;
  /** LAC known to the writer (-1: none). */
  lac: number;
  crc32c: number;
  ledgerLength: number;
}

/** One decoded Entry of an AddEntriesRequest; payload is a slice of the received message. */
export interface DecodedAddEntry extends AddEntryFields {
  payload: Buffer;
}

export interface DecodedAddEntriesRequest {
  entries: DecodedAddEntry[];
  recovery: boolean;
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

const STATUS_NAMES: readonly EntryStatusWireName[] = [
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
const STATUS_NUMBERS = new Map<string, number>(STATUS_NAMES.map((n, i) => [n, i]));

export interface AddResultFields {
  ledgerId: number;
  entryId: number;
  /** A name (`ENTRY_STATUS_OK`) or the enum number. */
  status: EntryStatusWireName | number;
  message?: string;
}

export interface DecodedAddResult {
  ledgerId: number;
  entryId: number;
  /** Unknown numbers (a newer bookie) decode as their number in a string. */
  status: EntryStatusWireName | string;
  message: string;
}

export interface DecodedAddEntriesResponse {
  results: DecodedAddResult[];
}

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;
const TWO_32 = 4294967296;

/** Bytes of `n` as a protobuf int64 varint (negative numbers take 10). */
function int64Size(n: number): number {
  if (n < 0) return 10;
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function uint32Size(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
}

function checkId(what: string, n: number): void {
  if (!Number.isSafeInteger(n)) {
    throw new RangeError(`${what} ${n} is not an integer below 2^53; ids and lengths must be safe integers`);
  }
}

/** Writes `n` (a safe integer, possibly negative) as an int64 varint; returns the next offset. */
function writeInt64(buf: Buffer, o: number, n: number): number {
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

function writeUint32(buf: Buffer, o: number, n: number): number {
  while (n >= 128) {
    buf[o++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[o++] = n;
  return o;
}

function sumLengths(parts: readonly Buffer[]): number {
  let n = 0;
  for (const p of parts) n += p.length;
  return n;
}

/**
 * One Entry, encoded once, ready to be placed into any number of
 * AddEntriesRequests: `head` holds the request's field-1 tag and length and
 * every Entry field but the payload bytes, which follow as `parts`.
 */
export class EncodedEntry {
  readonly head: Buffer;
  readonly parts: readonly Buffer[];
  /** head + payload bytes: what this entry adds to a request. */
  readonly byteLength: number;
  readonly payloadLength: number;

  constructor(
    readonly fields: AddEntryFields,
    payload: Buffer | readonly Buffer[],
  ) {
    const parts = Buffer.isBuffer(payload) ? [payload] : payload;
    const { ledgerId, entryId, lac, ledgerLength } = fields;
    checkId('ledger id', ledgerId);
    checkId('entry id', entryId);
    checkId('lac', lac);
    checkId('ledger length', ledgerLength);
    const payloadLength = sumLengths(parts);
    const body =
      1 +
      int64Size(ledgerId) +
      1 +
      int64Size(entryId) +
      1 +
      int64Size(lac) +
      5 +
      1 +
      int64Size(ledgerLength) +
      1 +
      uint32Size(payloadLength) +
      payloadLength;
    const headLength = 1 + uint32Size(body) + body - payloadLength;
    const head = Buffer.allocUnsafe(headLength);
    let o = 0;
    head[o++] = (1 << 3) | WIRE_LEN;
    o = writeUint32(head, o, body);
    head[o++] = (1 << 3) | WIRE_VARINT;
    o = writeInt64(head, o, ledgerId);
    head[o++] = (2 << 3) | WIRE_VARINT;
    o = writeInt64(head, o, entryId);
    head[o++] = (3 << 3) | WIRE_VARINT;
    o = writeInt64(head, o, lac);
    head[o++] = (5 << 3) | WIRE_I32;
    o = head.writeUInt32LE(fields.crc32c >>> 0, o);
    head[o++] = (6 << 3) | WIRE_VARINT;
    o = writeInt64(head, o, ledgerLength);
    head[o++] = (4 << 3) | WIRE_LEN;
    writeUint32(head, o, payloadLength);
    this.head = head;
    this.parts = parts;
    this.payloadLength = payloadLength;
    this.byteLength = headLength + payloadLength;
  }
}

/** Bytes of an AddEntriesRequest holding `entries`. */
export function addEntriesRequestLength(entries: readonly EncodedEntry[], recovery: boolean): number {
  let n = recovery ? 2 : 0;
  for (const e of entries) n += e.byteLength;
  return n;
}

/** An AddEntriesRequest as one Buffer: each entry's head and payload parts copied once. */
export function encodeAddEntriesRequest(entries: readonly EncodedEntry[], recovery: boolean): Buffer {
  const out = Buffer.allocUnsafe(addEntriesRequestLength(entries, recovery));
  let o = 0;
  for (const e of entries) {
    o += e.head.copy(out, o);
    for (const p of e.parts) o += p.copy(out, o);
  }
  if (recovery) {
    out[o++] = (2 << 3) | WIRE_VARINT;
    out[o++] = 1;
  }
  return out;
}

/** An AddEntriesResponse as one Buffer. */
export function encodeAddEntriesResponse(results: readonly AddResultFields[]): Buffer {
  let total = 0;
  const sizes: number[] = new Array(results.length);
  const messages: (Buffer | undefined)[] = new Array(results.length);
  const ids: number[] = new Array(results.length * 2);
  for (let i = 0; i < results.length; i++) {
    const r = results[i] as AddResultFields;
    // Results echo whatever ids a request carried, malformed ones included (answered INVALID).
    const ledgerId = wireInt64(r.ledgerId);
    const entryId = wireInt64(r.entryId);
    ids[2 * i] = ledgerId;
    ids[2 * i + 1] = entryId;
    const msg = r.message ? Buffer.from(r.message, 'utf8') : undefined;
    messages[i] = msg;
    const status = statusNumber(r.status);
    let body = 1 + int64Size(ledgerId) + 1 + int64Size(entryId);
    if (status !== 0) body += 1 + uint32Size(status);
    if (msg) body += 1 + uint32Size(msg.length) + msg.length;
    sizes[i] = body;
    total += 1 + uint32Size(body) + body;
  }
  const out = Buffer.allocUnsafe(total);
  let o = 0;
  for (let i = 0; i < results.length; i++) {
    const r = results[i] as AddResultFields;
    const msg = messages[i];
    const status = statusNumber(r.status);
    out[o++] = (1 << 3) | WIRE_LEN;
    o = writeUint32(out, o, sizes[i] as number);
    out[o++] = (1 << 3) | WIRE_VARINT;
    o = writeInt64(out, o, ids[2 * i] as number);
    out[o++] = (2 << 3) | WIRE_VARINT;
    o = writeInt64(out, o, ids[2 * i + 1] as number);
    if (status !== 0) {
      out[o++] = (3 << 3) | WIRE_VARINT;
      o = writeUint32(out, o, status);
    }
    if (msg) {
      out[o++] = (4 << 3) | WIRE_LEN;
      o = writeUint32(out, o, msg.length);
      o += msg.copy(out, o);
    }
  }
  return out;
}

/** An integer in int64 range: what protobufjs would put on the wire for a number. */
function wireInt64(n: number): number {
  if (!Number.isFinite(n)) return 0;
  const t = Math.trunc(n);
  return t >= 2 ** 63 || t < -(2 ** 63) ? 0 : t;
}

function statusNumber(s: EntryStatusWireName | number): number {
  if (typeof s === 'number') return s >>> 0;
  const n = STATUS_NUMBERS.get(s);
  if (n === undefined) throw new RangeError(`unknown entry status '${s}'; use an ENTRY_STATUS_* name`);
  return n;
}

/** Cursor over one protobuf message; throws RangeError on malformed input. */
class Reader {
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

function decodeEntry(buf: Buffer, start: number, end: number): DecodedAddEntry {
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

/** Decodes an AddEntriesRequest; payloads are slices of `buf` (not copies). */
export function decodeAddEntriesRequest(buf: Buffer): DecodedAddEntriesRequest {
  const r = new Reader(buf, 0, buf.length);
  const entries: DecodedAddEntry[] = [];
  let recovery = false;
  while (!r.done) {
    const tag = r.uint32();
    const wt = tag & 7;
    const field = tag >>> 3;
    if (field === 1 && wt === WIRE_LEN) {
      const start = r.lengthDelimited();
      entries.push(decodeEntry(buf, start, r.pos));
    } else if (field === 2 && wt === WIRE_VARINT) {
      recovery = r.int64() !== 0;
    } else {
      r.skip(wt);
    }
  }
  return { entries, recovery };
}

function decodeResult(buf: Buffer, start: number, end: number): DecodedAddResult {
  const r = new Reader(buf, start, end);
  let ledgerId = 0;
  let entryId = 0;
  let status = 0;
  let message = '';
  while (!r.done) {
    const tag = r.uint32();
    const wt = tag & 7;
    const field = tag >>> 3;
    if (field === 1 && wt === WIRE_VARINT) ledgerId = r.int64();
    else if (field === 2 && wt === WIRE_VARINT) entryId = r.int64();
    else if (field === 3 && wt === WIRE_VARINT) status = r.int64();
    else if (field === 4 && wt === WIRE_LEN) {
      const s = r.lengthDelimited();
      message = buf.toString('utf8', s, r.pos);
    } else r.skip(wt);
  }
  return { ledgerId, entryId, status: STATUS_NAMES[status] ?? String(status), message };
}

/** Decodes an AddEntriesResponse. */
export function decodeAddEntriesResponse(buf: Buffer): DecodedAddEntriesResponse {
  const r = new Reader(buf, 0, buf.length);
  const results: DecodedAddResult[] = [];
  while (!r.done) {
    const tag = r.uint32();
    const wt = tag & 7;
    if (tag >>> 3 === 1 && wt === WIRE_LEN) {
      const start = r.lengthDelimited();
      results.push(decodeResult(buf, start, r.pos));
    } else r.skip(wt);
  }
  return { results };
}
