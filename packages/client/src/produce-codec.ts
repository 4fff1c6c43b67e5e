import type { ProduceRequest } from '@sluice/proto';
import {
  type BatchEntry,
  batchKey,
  fieldSize,
  measureBatchMessages,
  varintSize,
  writeBatchMessages,
  writeString,
  writeVarint,
} from './batch-codec.js';
import { type CompressionType, compress, compressionCodec } from './compression.js';

/**
 * What a producer writes on its Produce stream: a `ProduceRequest` object
 * (open), or a `ProduceRequest { send }` already serialized by
 * `encodeSendRequest`, which the stream's serializer passes through as is.
 */
export type OutgoingProduceRequest = ProduceRequest | Buffer;

/** `CompressionCodec` enum numbers of batch.proto. */
const CODEC_NUMBERS: Record<string, number> = {
  COMPRESSION_CODEC_UNSPECIFIED: 0,
  COMPRESSION_CODEC_LZ4: 1,
  COMPRESSION_CODEC_ZSTD: 2,
  COMPRESSION_CODEC_GZIP: 3,
  COMPRESSION_CODEC_DEFLATE: 4,
};

export interface SendRequestOptions {
  firstSequenceId: number;
  compression: CompressionType;
  /** Deliver no earlier than this (epoch ms); 0 = now. */
  deliverAt: number;
}

interface Header {
  count: number;
  firstSequenceId: number;
  codec: number;
  uncompressedSize: number;
  key: string;
  deliverAt: number;
}

function headerSize(h: Header): number {
  let n = 0;
  if (h.count !== 0) n += 1 + varintSize(h.count);
  if (h.firstSequenceId !== 0) n += 1 + varintSize(h.firstSequenceId);
  if (h.codec !== 0) n += 1 + varintSize(h.codec);
  if (h.uncompressedSize !== 0) n += 1 + varintSize(h.uncompressedSize);
  if (h.key !== '') n += fieldSize(Buffer.byteLength(h.key, 'utf8'));
  if (h.deliverAt !== 0) n += 1 + varintSize(h.deliverAt);
  return n;
}

function writeHeader(buf: Buffer, o: number, h: Header): number {
  if (h.count !== 0) {
    buf[o++] = 0x08; // BatchHeader.count
    o = writeVarint(buf, o, h.count);
  }
  if (h.firstSequenceId !== 0) {
    buf[o++] = 0x10; // BatchHeader.first_sequence_id
    o = writeVarint(buf, o, h.firstSequenceId);
  }
  if (h.codec !== 0) {
    buf[o++] = 0x18; // BatchHeader.codec
    o = writeVarint(buf, o, h.codec);
  }
  if (h.uncompressedSize !== 0) {
    buf[o++] = 0x20; // BatchHeader.uncompressed_size
    o = writeVarint(buf, o, h.uncompressedSize);
  }
  if (h.key !== '') o = writeString(buf, o, 0x2a, h.key); // BatchHeader.key
  if (h.deliverAt !== 0) {
    buf[o++] = 0x30; // BatchHeader.deliver_at
    o = writeVarint(buf, o, h.deliverAt);
  }
  return o;
}

/**
 * Lay out `ProduceRequest { send: SendBatch { batch: MessageBatch { header,
 * payload } } }` around a payload of `payloadSize` bytes and return the
 * buffer with the offset where the payload goes; everything before it is
 * written.
 */
function frame(header: Header, payloadSize: number): { buf: Buffer; payloadAt: number } {
  const hdr = headerSize(header);
  const batch = fieldSize(hdr) + fieldSize(payloadSize);
  const send = fieldSize(batch);
  const buf = Buffer.allocUnsafe(fieldSize(send));
  let o = 0;
  buf[o++] = 0x12; // ProduceRequest.send
  o = writeVarint(buf, o, send);
  buf[o++] = 0x0a; // SendBatch.batch
  o = writeVarint(buf, o, batch);
  buf[o++] = 0x0a; // MessageBatch.header
  o = writeVarint(buf, o, hdr);
  o = writeHeader(buf, o, header);
  buf[o++] = 0x12; // MessageBatch.payload
  o = writeVarint(buf, o, payloadSize);
  return { buf, payloadAt: o };
}

/**
 * Serialize the `ProduceRequest` that sends one batch, by hand and into one
 * buffer. Without compression the messages are written straight into the
 * request; protobufjs would first encode the batch and then copy it into a
 * second buffer for the request (and grpc-js copies it once more to frame
 * it), so at 128 KiB batches this saves one allocation and one copy per batch.
 */
export async function encodeSendRequest(
  messages: readonly BatchEntry[],
  opts: SendRequestOptions,
): Promise<Buffer> {
  const codec = CODEC_NUMBERS[compressionCodec(opts.compression)] ?? 0;
  const layout = measureBatchMessages(messages);
  const header: Header = {
    count: messages.length,
    firstSequenceId: opts.firstSequenceId,
    codec,
    uncompressedSize: layout.total,
    key: batchKey(messages),
    deliverAt: opts.deliverAt,
  };
  if (codec === 0) {
    const { buf, payloadAt } = frame(header, layout.total);
    writeBatchMessages(buf, payloadAt, messages, layout);
    return buf;
  }
  const raw = Buffer.allocUnsafe(layout.total);
  writeBatchMessages(raw, 0, messages, layout);
  const payload = await compress(opts.compression, raw);
  const { buf, payloadAt } = frame(header, payload.length);
  payload.copy(buf, payloadAt);
  return buf;
}

/**
 * The Produce stream's request serializer: pre-serialized sends pass
 * through; other requests (open) go to the proto's generated serializer.
 */
export function produceRequestSerializer(
  generated: (req: ProduceRequest) => Buffer,
): (req: OutgoingProduceRequest) => Buffer {
  return (req) => (Buffer.isBuffer(req) ? req : generated(req));
}
