/**
 * Hand-written wire codec for the responses of the ReadEntries stream of
 * sluice.v1.BookieService (ReadEntriesResponse in bookie.proto, which stays
 * the contract). It exists for the catch-up read path only:
 *
 * - a bookie encodes a chunk of stored entries straight into one Buffer,
 *   copying each payload once, without a protobufjs object per entry;
 * - the ledger client decodes a chunk into plain entries whose payloads are
 *   slices of the received message, without a protobufjs object per entry.
 *
 * What it cannot remove: grpc-js copies every serialized message once more to
 * prefix its frame header (server side) and joins the HTTP/2 frames of a
 * received message into one Buffer (client side).
 *
 * Requests (four scalars) keep the generated codec. Decoders accept any field
 * order, skip unknown fields and, for repeated scalars, keep the last value,
 * as protobuf requires.
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

/** An entry as a bookie returns it (a stored entry fits as it is). */
export interface ReadEntryFields extends EntryFields {
  payload: Buffer;
}

/** One ReadEntriesResponse as the bookie writes it. */
export interface ReadEntriesChunk {
  entries: readonly ReadEntryFields[];
  /** Set on the last chunk of a range that ended early: a name or the enum number. */
  stoppedBy?: EntryStatusWireName | number;
  /** The entry id at which the range stopped early. */
  stoppedAt?: number;
}

export interface DecodedReadEntriesResponse {
  /** Payloads are slices of the received message. */
  entries: DecodedEntry[];
  /** `ENTRY_STATUS_UNSPECIFIED` unless the range ended early; unknown numbers decode as their number in a string. */
  stoppedBy: EntryStatusWireName | string;
  stoppedAt: number;
}

/** Bytes of one Entry message's fields (without its tag and length). */
function entryBodyLength(e: ReadEntryFields): number {
  const payloadLength = e.payload.length;
  return (
    1 +
    int64Size(e.ledgerId) +
    1 +
    int64Size(e.entryId) +
    1 +
    int64Size(e.lac) +
    1 +
    uint32Size(payloadLength) +
    payloadLength +
    5 +
    1 +
    int64Size(e.ledgerLength)
  );
}

/** A ReadEntriesResponse as one Buffer: each payload copied once. */
export function encodeReadEntriesResponse(chunk: ReadEntriesChunk): Buffer {
  const { entries } = chunk;
  const bodies = new Array<number>(entries.length);
  let total = 0;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as ReadEntryFields;
    checkId('ledger id', e.ledgerId);
    checkId('entry id', e.entryId);
    checkId('lac', e.lac);
    checkId('ledger length', e.ledgerLength);
    const body = entryBodyLength(e);
    bodies[i] = body;
    total += 1 + uint32Size(body) + body;
  }
  const stoppedBy = chunk.stoppedBy === undefined ? 0 : statusNumber(chunk.stoppedBy);
  if (stoppedBy !== 0) total += 1 + uint32Size(stoppedBy);
  const stoppedAt = chunk.stoppedAt === undefined ? 0 : wireInt64(chunk.stoppedAt);
  if (stoppedAt !== 0) total += 1 + int64Size(stoppedAt);

  const out = Buffer.allocUnsafe(total);
  let o = 0;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as ReadEntryFields;
    out[o++] = (1 << 3) | WIRE_LEN;
    o = writeUint32(out, o, bodies[i] as number);
    out[o++] = (1 << 3) | WIRE_VARINT;
    o = writeInt64(out, o, e.ledgerId);
    out[o++] = (2 << 3) | WIRE_VARINT;
    o = writeInt64(out, o, e.entryId);
    out[o++] = (3 << 3) | WIRE_VARINT;
    o = writeInt64(out, o, e.lac);
    out[o++] = (4 << 3) | WIRE_LEN;
    o = writeUint32(out, o, e.payload.length);
    o += e.payload.copy(out, o);
    out[o++] = (5 << 3) | WIRE_I32;
    o = out.writeUInt32LE(e.crc32c >>> 0, o);
    out[o++] = (6 << 3) | WIRE_VARINT;
    o = writeInt64(out, o, e.ledgerLength);
  }
  if (stoppedBy !== 0) {
    out[o++] = (2 << 3) | WIRE_VARINT;
    o = writeUint32(out, o, stoppedBy);
  }
  if (stoppedAt !== 0) {
    out[o++] = (3 << 3) | WIRE_VARINT;
    writeInt64(out, o, stoppedAt);
  }
  return out;
}

/** Decodes a ReadEntriesResponse; payloads are slices of `buf` (not copies). */
export function decodeReadEntriesResponse(buf: Buffer): DecodedReadEntriesResponse {
  const r = new Reader(buf, 0, buf.length);
  const entries: DecodedEntry[] = [];
  let stoppedBy = 0;
  let stoppedAt = 0;
  while (!r.done) {
    const tag = r.uint32();
    const wt = tag & 7;
    const field = tag >>> 3;
    if (field === 1 && wt === WIRE_LEN) {
      const start = r.lengthDelimited();
      entries.push(decodeEntry(buf, start, r.pos));
    } else if (field === 2 && wt === WIRE_VARINT) {
      stoppedBy = r.int64();
    } else if (field === 3 && wt === WIRE_VARINT) {
      stoppedAt = r.int64();
    } else {
      r.skip(wt);
    }
  }
  return { entries, stoppedBy: STATUS_NAMES[stoppedBy] ?? String(stoppedBy), stoppedAt };
}
