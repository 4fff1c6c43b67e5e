import { crc32c } from '@sluice/common';
import { writeInt64LE } from './int64.js';

/**
 * Journal record layout (little endian), format version 2:
 *
 *   u32 bodyLength | u32 crc32c(header bytes 8..HEADER) | u8 type | u8 version |
 *   u16 0 | u64 ledgerId | u64 entryId | i64 lac | u32 payloadCrc |
 *   i64 ledgerLength | u32 fileId | payload
 *
 * `fileId` (low 32 bits of the journal file's id) tells the records of a
 * recycled journal file from the stale ones of its previous life after them.
 *
 * `ledgerLength` is the writer's total payload length of the ledger up to and
 * including the entry (0 when the writer did not say); reads return it so
 * that ledger recovery learns a ledger's length from its last entry alone.
 * A record of another version with an intact header is not a torn tail but
 * data this build cannot read: replay refuses it rather than skip it.
 *
 * The header CRC covers everything but the payload; the payload is covered by
 * the writer's own CRC32C, so a record is checked whole without computing a
 * second checksum over large payloads. A short record, a bad header CRC or a
 * payload that fails its CRC marks the torn tail of a journal. A record is
 * never judged by a size limit of the running bookie: see `decodeRecord`.
 */
export const JOURNAL_HEADER_BYTES = 52;
export const JOURNAL_FORMAT_VERSION = 2;

/**
 * ADD carries the entry's payload. ADD_REF carries where an entry written
 * straight to an entry log lies (see `refRecord`): the entry is durable
 * there before its add is acknowledged, so the journal needs only the
 * pointer.
 */
export const RecordType = { ADD: 1, FENCE: 2, ADD_REF: 3 } as const;
export type RecordType = (typeof RecordType)[keyof typeof RecordType];

export interface JournalRecord {
  type: RecordType;
  ledgerId: number;
  entryId: number;
  lac: number;
  payloadCrc: number;
  ledgerLength: number;
  payload: Buffer;
}

const EMPTY = Buffer.alloc(0);

/** The header of a record; the payload is written after it unchanged (no copy). */
export function encodeRecordHeader(
  rec: Omit<JournalRecord, 'payload'>,
  payloadLength: number,
  fileId: number,
): Buffer {
  const h = Buffer.allocUnsafe(JOURNAL_HEADER_BYTES);
  writeRecordHeader(h, 0, rec, payloadLength, fileId);
  return h;
}

/**
 * Headers are built here and copied into place: the header CRC is then
 * computed over a fixed view instead of a fresh `subarray` per record
 * (~100 bytes of garbage per add on the hot path).
 */
const headerScratch = Buffer.alloc(JOURNAL_HEADER_BYTES);
const headerScratchBody = headerScratch.subarray(8);

/** `encodeRecordHeader` into `out` at `at` (a group's buffer), without a Buffer of its own. */
export function writeRecordHeader(
  out: Buffer,
  at: number,
  rec: Omit<JournalRecord, 'payload'>,
  payloadLength: number,
  fileId: number,
): void {
  const h = headerScratch;
  h.writeUInt32LE(JOURNAL_HEADER_BYTES - 8 + payloadLength, 0);
  h.writeUInt8(rec.type, 8);
  h.writeUInt8(JOURNAL_FORMAT_VERSION, 9);
  h.writeUInt16LE(0, 10);
  writeInt64LE(h, rec.ledgerId, 12);
  writeInt64LE(h, rec.entryId, 20);
  writeInt64LE(h, rec.lac, 28);
  h.writeUInt32LE(rec.payloadCrc >>> 0, 36);
  writeInt64LE(h, rec.ledgerLength, 40);
  h.writeUInt32LE(fileId >>> 0, 48);
  h.writeUInt32LE(crc32c(headerScratchBody), 4);
  out.set(h, at);
}

export function fenceRecord(ledgerId: number): JournalRecord {
  return {
    type: RecordType.FENCE,
    ledgerId,
    entryId: 0,
    lac: -1,
    payloadCrc: 0,
    ledgerLength: 0,
    payload: EMPTY,
  };
}

/**
 * Payload of an ADD_REF record (little endian):
 *
 *   u32 logId | u64 offset | u32 length | u32 crc32c(bytes 0..16) | u32 0
 *
 * The header CRC does not cover payloads, so the location has its own.
 */
export const REF_PAYLOAD_BYTES = 24;

/** Built here, then copied: the CRC covers a fixed view, not a fresh `subarray` per record. */
const refScratch = Buffer.alloc(REF_PAYLOAD_BYTES);
const refScratchCovered = refScratch.subarray(0, 16);

/** The ADD_REF record of an entry stored at `loc` of an entry log. */
export function refRecord(
  e: { ledgerId: number; entryId: number; lac: number; crc32c: number; ledgerLength: number },
  loc: { logId: number; offset: number; length: number },
): JournalRecord {
  const r = refScratch;
  r.writeUInt32LE(loc.logId, 0);
  writeInt64LE(r, loc.offset, 4);
  r.writeUInt32LE(loc.length, 12);
  r.writeUInt32LE(crc32c(refScratchCovered), 16);
  r.writeUInt32LE(0, 20);
  const payload = Buffer.allocUnsafe(REF_PAYLOAD_BYTES);
  payload.set(r);
  return {
    type: RecordType.ADD_REF,
    ledgerId: e.ledgerId,
    entryId: e.entryId,
    lac: e.lac,
    payloadCrc: e.crc32c,
    ledgerLength: e.ledgerLength,
    payload,
  };
}

/** The entry log location an intact ADD_REF payload names. */
export function refLocation(payload: Buffer): { logId: number; offset: number; length: number } {
  return {
    logId: payload.readUInt32LE(0),
    offset: Number(payload.readBigUInt64LE(4)),
    length: payload.readUInt32LE(12),
  };
}

function refIntact(payload: Buffer): boolean {
  return payload.length === REF_PAYLOAD_BYTES && crc32c(payload.subarray(0, 16)) === payload.readUInt32LE(16);
}

export type DecodeResult =
  | { ok: true; record: JournalRecord; size: number }
  | { ok: false; reason: 'short' | 'crc' | 'payload-crc' | 'length' | 'version' | 'stale' | 'zero' };

function isZero(buf: Buffer, offset: number, length: number): boolean {
  for (let i = offset; i < offset + length; i++) if (buf[i] !== 0) return false;
  return true;
}

/**
 * The largest payload a journal record can hold: its body length is a u32.
 * Replay bounds records by this, never by `maxEntryBytes`, which may have
 * been lowered since the record was written and acknowledged.
 */
export const JOURNAL_MAX_PAYLOAD_BYTES = 0xffff_ffff - (JOURNAL_HEADER_BYTES - 8);

/**
 * Decode the record at `offset` of `buf`, read from journal file `fileId`;
 * the payload is a slice of `buf`.
 *
 * The header CRC is checked before anything the header says is believed: an
 * intact header is a record that was written whole, whatever today's
 * settings allow, and only a header that fails its CRC is a torn tail. (The
 * body length, bytes 0..4, is outside the header CRC; a wrong one fails the
 * payload's own check, or the fixed length of FENCE and ADD_REF bodies.)
 */
export function decodeRecord(buf: Buffer, offset: number, fileId: number): DecodeResult {
  if (buf.length - offset < JOURNAL_HEADER_BYTES) return { ok: false, reason: 'short' };
  // Zero-filled space the journal preallocated: the end of what was written.
  if (isZero(buf, offset, JOURNAL_HEADER_BYTES)) return { ok: false, reason: 'zero' };
  const bodyLength = buf.readUInt32LE(offset);
  const crc = buf.readUInt32LE(offset + 4);
  if (crc32c(buf.subarray(offset + 8, offset + JOURNAL_HEADER_BYTES)) !== crc) {
    // Version 1 had a 40-byte header and version byte 0: intact old data, not a torn tail.
    const legacy = buf.readUInt8(offset + 9) === 0 && crc32c(buf.subarray(offset + 8, offset + 40)) === crc;
    return { ok: false, reason: legacy ? 'version' : 'crc' };
  }
  if (buf.readUInt8(offset + 9) !== JOURNAL_FORMAT_VERSION) return { ok: false, reason: 'version' };
  if (buf.readUInt32LE(offset + 48) !== fileId >>> 0) return { ok: false, reason: 'stale' };
  const type = buf.readUInt8(offset + 8) as RecordType;
  const payloadLength = bodyLength - (JOURNAL_HEADER_BYTES - 8);
  if (
    payloadLength < 0 ||
    (type === RecordType.FENCE && payloadLength !== 0) ||
    (type === RecordType.ADD_REF && payloadLength !== REF_PAYLOAD_BYTES)
  )
    return { ok: false, reason: 'length' };
  const size = 8 + bodyLength;
  if (buf.length - offset < size) return { ok: false, reason: 'short' };
  const payloadCrc = buf.readUInt32LE(offset + 36);
  const payload = buf.subarray(offset + JOURNAL_HEADER_BYTES, offset + size);
  if (type === RecordType.ADD && crc32c(payload) !== payloadCrc) return { ok: false, reason: 'payload-crc' };
  if (type === RecordType.ADD_REF && !refIntact(payload)) return { ok: false, reason: 'payload-crc' };
  return {
    ok: true,
    size,
    record: {
      type,
      ledgerId: Number(buf.readBigUInt64LE(offset + 12)),
      entryId: Number(buf.readBigUInt64LE(offset + 20)),
      lac: Number(buf.readBigInt64LE(offset + 28)),
      payloadCrc,
      ledgerLength: Number(buf.readBigInt64LE(offset + 40)),
      payload,
    },
  };
}
