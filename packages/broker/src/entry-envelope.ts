import { CorruptDataError, InvalidArgumentError } from '@sluice/common';

/**
 * What one ledger entry holds: the broker's envelope (publish time, producer,
 * sequence id, the batch header) followed by the batch payload exactly as the
 * producer sent it. The broker never looks inside the payload.
 *
 *   u8 magic 0xB5 | u8 version 1 | f64 publishTime | f64 firstSequenceId |
 *   u32 count | u8 codec | u32 uncompressedSize | f64 deliverAt |
 *   u16 len + producer name (UTF-8) | u16 len + key (UTF-8) | payload
 *
 * Numbers are big-endian; f64 holds integers exactly up to 2^53.
 */
export interface EnvelopeHeader {
  publishTime: number;
  producerName: string;
  firstSequenceId: number;
  count: number;
  /** CompressionCodec enum number. */
  codec: number;
  uncompressedSize: number;
  deliverAt: number;
  key: string;
}

export interface Envelope extends EnvelopeHeader {
  payload: Buffer;
}

const MAGIC = 0xb5;
const VERSION = 1;
const FIXED = 2 + 8 + 8 + 4 + 1 + 4 + 8;
/** Longest batch key (UTF-8 bytes) the envelope's u16 length can hold. */
export const MAX_BATCH_KEY_BYTES = 0xffff;
/**
 * Most messages a producer's batch may claim. The broker sizes batch-index
 * ack bitsets, permits and ack loops by the claimed count without unpacking
 * the batch, so a count near 2^32 cost seconds of CPU and gigabytes per
 * entry. A million is 1000 times the client's default batch and still far
 * above what fits a batch: a message takes at least 2 bytes in it, and
 * batches are capped at the max message size (5 MiB by default).
 */
export const MAX_BATCH_MESSAGES = 1_000_000;

/**
 * The envelope as one Buffer (what the managed log stores and caches for
 * tailing readers): one allocation, the payload copied once.
 */
export function encodeEnvelope(h: EnvelopeHeader, payload: Buffer): Buffer {
  const headLength = envelopeHeaderLength(h);
  const out = Buffer.allocUnsafe(headLength + payload.length);
  writeEnvelopeHeader(h, out);
  payload.copy(out, headLength);
  return out;
}

/**
 * The envelope as [header, payload] without copying the payload, for
 * writers that take an entry in parts (`LedgerWriter.addEntry`).
 */
export function encodeEnvelopeParts(h: EnvelopeHeader, payload: Buffer): [Buffer, Buffer] {
  const head = Buffer.allocUnsafe(envelopeHeaderLength(h));
  writeEnvelopeHeader(h, head);
  return [head, payload];
}

function envelopeHeaderLength(h: EnvelopeHeader): number {
  const producer = Buffer.byteLength(h.producerName, 'utf8');
  const key = Buffer.byteLength(h.key, 'utf8');
  if (producer > 0xffff || key > 0xffff) {
    throw new InvalidArgumentError('producer name and batch key must each be under 64 KiB; use shorter ones');
  }
  return FIXED + 2 + producer + 2 + key;
}

/** Writes the header at the start of `head` (sized by envelopeHeaderLength). */
function writeEnvelopeHeader(h: EnvelopeHeader, head: Buffer): void {
  let o = 0;
  o = head.writeUInt8(MAGIC, o);
  o = head.writeUInt8(VERSION, o);
  o = head.writeDoubleBE(h.publishTime, o);
  o = head.writeDoubleBE(h.firstSequenceId, o);
  o = head.writeUInt32BE(h.count >>> 0, o);
  o = head.writeUInt8(h.codec & 0xff, o);
  o = head.writeUInt32BE(h.uncompressedSize >>> 0, o);
  o = head.writeDoubleBE(h.deliverAt, o);
  const producerLength = head.write(h.producerName, o + 2, 'utf8');
  o = head.writeUInt16BE(producerLength, o) + producerLength;
  const keyLength = head.write(h.key, o + 2, 'utf8');
  head.writeUInt16BE(keyLength, o);
}

function corrupt(why: string): CorruptDataError {
  return new CorruptDataError(
    `stored entry is not a Sluice batch envelope (${why}); the topic data was written by something else`,
  );
}

/**
 * The envelope in `buf`. With `body`, `buf` is the header alone (an entry
 * appended in parts) and `body` the payload.
 */
export function decodeEnvelope(buf: Buffer, body?: Buffer): Envelope {
  if (buf.length < FIXED + 4) throw corrupt(`only ${buf.length} bytes`);
  if (buf.readUInt8(0) !== MAGIC) throw corrupt('bad magic');
  if (buf.readUInt8(1) !== VERSION) throw corrupt(`unknown version ${buf.readUInt8(1)}`);
  let o = 2;
  const publishTime = buf.readDoubleBE(o);
  o += 8;
  const firstSequenceId = buf.readDoubleBE(o);
  o += 8;
  const count = buf.readUInt32BE(o);
  o += 4;
  const codec = buf.readUInt8(o);
  o += 1;
  const uncompressedSize = buf.readUInt32BE(o);
  o += 4;
  const deliverAt = buf.readDoubleBE(o);
  o += 8;
  const pLen = buf.readUInt16BE(o);
  o += 2;
  if (o + pLen + 2 > buf.length) throw corrupt('truncated producer name');
  const producerName = buf.toString('utf8', o, o + pLen);
  o += pLen;
  const kLen = buf.readUInt16BE(o);
  o += 2;
  if (o + kLen > buf.length) throw corrupt('truncated key');
  const key = buf.toString('utf8', o, o + kLen);
  o += kLen;
  if (body !== undefined && o !== buf.length)
    throw corrupt('the header part does not end where its payload starts');
  return {
    publishTime,
    producerName,
    firstSequenceId,
    count,
    codec,
    uncompressedSize,
    deliverAt,
    key,
    payload: body ?? buf.subarray(o),
  };
}

/**
 * The envelope of a log entry. One still in the parts it was appended in
 * ([header, payload], from the tail cache) is read without joining them.
 */
export function decodeEnvelopeOf(entry: {
  readonly payload: Buffer;
  readonly parts?: readonly Buffer[];
}): Envelope {
  const parts = entry.parts;
  return parts?.length === 2 ? decodeEnvelope(parts[0]!, parts[1]!) : decodeEnvelope(entry.payload);
}

/**
 * True when `payload` is (nearly) all of the memory it sits in, so keeping
 * it costs what it counts: a payload sliced from a larger allocation (a
 * small request in Node's shared 8 KiB pool, or one batch of a request
 * holding several) would keep all of that alive in the tail cache.
 */
export function ownsItsMemory(payload: Buffer): boolean {
  return payload.buffer.byteLength - payload.length <= Math.max(1024, payload.length >>> 3);
}

/** Publish time only (seek by time reads nothing else). */
export function envelopePublishTime(buf: Buffer): number {
  if (buf.length < 10 || buf.readUInt8(0) !== MAGIC) throw corrupt('bad header');
  return buf.readDoubleBE(2);
}

export const CODEC_NUMBERS: Record<string, number> = {
  COMPRESSION_CODEC_UNSPECIFIED: 0,
  COMPRESSION_CODEC_LZ4: 1,
  COMPRESSION_CODEC_ZSTD: 2,
  COMPRESSION_CODEC_GZIP: 3,
  COMPRESSION_CODEC_DEFLATE: 4,
};
