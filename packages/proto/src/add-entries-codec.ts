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

import {
  checkId,
  type DecodedEntry,
  decodeEntry,
  type EntryFields,
  type EntryStatusWireName,
  int64Size,
  Reader,
  STATUS_NAMES,
  statusNumber,
  uint32Size,
  WIRE_I32,
  WIRE_LEN,
  WIRE_VARINT,
  wireInt64,
  writeInt64,
  writeUint32,
} from './bookie-wire.js';

export type { DecodedEntry, EntryFields, EntryStatusWireName } from './bookie-wire.js';

/** Entry fields as the write path holds them (ids are below 2^53). */
export type AddEntryFields = EntryFields;

/** One decoded Entry of an AddEntriesRequest; payload is a slice of the received message. */
export type DecodedAddEntry = DecodedEntry;

export interface DecodedAddEntriesRequest {
  entries: DecodedAddEntry[];
  recovery: boolean;
}

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

function sumLengths(parts: readonly Buffer[]): number {
  let n = 0;
  for (const p of parts) n += p.length;
  return n;
}

/** gRPC method path of the stream this codec encodes (the ledger client's `Http2AddStream` requests it). */
export const ADD_ENTRIES_PATH = '/sluice.v1.BookieService/AddEntries';

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

/** The `recovery = true` field of an AddEntriesRequest. */
const RECOVERY_FIELD = Buffer.from([(2 << 3) | WIRE_VARINT, 1]);

/**
 * An AddEntriesRequest as the Buffers to send one after another, nothing
 * copied: each entry's head, then its payload parts as they are. Same bytes
 * as `encodeAddEntriesRequest`.
 */
export function addEntriesRequestParts(entries: readonly EncodedEntry[], recovery: boolean): Buffer[] {
  const out: Buffer[] = [];
  for (const e of entries) {
    out.push(e.head);
    for (const p of e.parts) if (p.length > 0) out.push(p);
  }
  if (recovery) out.push(RECOVERY_FIELD);
  return out;
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
