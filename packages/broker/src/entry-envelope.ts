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

export function encodeEnvelope(h: EnvelopeHeader, payload: Buffer): Buffer {
  const producer = Buffer.from(h.producerName, 'utf8');
  const key = Buffer.from(h.key, 'utf8');
  if (producer.length > 0xffff || key.length > 0xffff) {
    throw new InvalidArgumentError('producer name and batch key must each be under 64 KiB; use shorter ones');
  }
  const head = Buffer.allocUnsafe(FIXED + 2 + producer.length + 2 + key.length);
  let o = 0;
  o = head.writeUInt8(MAGIC, o);
  o = head.writeUInt8(VERSION, o);
  o = head.writeDoubleBE(h.publishTime, o);
  o = head.writeDoubleBE(h.firstSequenceId, o);
  o = head.writeUInt32BE(h.count >>> 0, o);
  o = head.writeUInt8(h.codec & 0xff, o);
  o = head.writeUInt32BE(h.uncompressedSize >>> 0, o);
  o = head.writeDoubleBE(h.deliverAt, o);
  o = head.writeUInt16BE(producer.length, o);
  o += producer.copy(head, o);
  o = head.writeUInt16BE(key.length, o);
  key.copy(head, o);
  return Buffer.concat([head, payload]);
}

function corrupt(why: string): CorruptDataError {
  return new CorruptDataError(
    `stored entry is not a Sluice batch envelope (${why}); the topic data was written by something else`,
  );
}

export function decodeEnvelope(buf: Buffer): Envelope {
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
  return {
    publishTime,
    producerName,
    firstSequenceId,
    count,
    codec,
    uncompressedSize,
    deliverAt,
    key,
    payload: buf.subarray(o),
  };
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
