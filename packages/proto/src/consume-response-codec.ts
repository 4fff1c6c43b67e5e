/**
 * Hand-written encoder of the ConsumeResponse messages that carry
 * `deliveries` (broker.proto), the broker's dispatch path. broker.proto
 * stays the contract; every other ConsumeResponse keeps the generated codec.
 *
 * protobufjs built a message object per Delivery, MessageId, MessageBatch and
 * BatchHeader, then an operation list, then a fresh Buffer holding the whole
 * response (a tailing consumer's responses are ~1 MiB each), which grpc-js at
 * once copies again behind its 5-byte frame prefix. This encoder writes into
 * one reusable scratch buffer instead: grpc-js's copy is the only one kept, so
 * the broker allocates one Buffer per response rather than two.
 *
 * The returned Buffer is a view of the scratch and is valid only until the
 * next call: use it only as a grpc-js serializer, which copies it before
 * returning.
 */

import {
  int64Size,
  TWO_32,
  uint32Size,
  WIRE_LEN,
  WIRE_VARINT,
  wireInt64,
  writeInt64,
  writeUint32,
} from './bookie-wire.js';

/** A Delivery as the broker builds it (numbers for 64-bit fields). */
export interface DeliveryFields {
  messageId?: { ledgerId?: unknown; entryId?: unknown; batchIndex?: number; partition?: number } | null;
  batch?: {
    header?: {
      count?: number;
      firstSequenceId?: unknown;
      codec?: string | number;
      uncompressedSize?: number;
      key?: string;
      deliverAt?: unknown;
    } | null;
    payload?: Buffer | Uint8Array | string;
  } | null;
  publishTime?: unknown;
  redeliveryCount?: number;
  ackedIndexes?: readonly number[];
  producerName?: string;
}

const CODECS: Record<string, number> = {
  COMPRESSION_CODEC_UNSPECIFIED: 0,
  COMPRESSION_CODEC_LZ4: 1,
  COMPRESSION_CODEC_ZSTD: 2,
  COMPRESSION_CODEC_GZIP: 3,
};

/** ConsumeResponse.deliveries = 2, Deliveries.deliveries = 1. */
const RESPONSE_DELIVERIES_TAG = (2 << 3) | WIRE_LEN;
const DELIVERIES_DELIVERY_TAG = (1 << 3) | WIRE_LEN;

/** Below this the scratch is kept; a larger one is dropped after use. */
const KEEP_SCRATCH_BYTES = 32 * 1024 * 1024;
let scratch = Buffer.allocUnsafe(64 * 1024);

/** An int64 field given as a number, a decimal string or a Long, as protobufjs would write it. */
function int64Of(v: unknown): number {
  return wireInt64(typeof v === 'number' ? v : v === undefined || v === null ? 0 : Number(String(v)));
}

/** An int32 field: negative values take 10 bytes (sign-extended), as protobuf encodes them. */
function int32Size(n: number): number {
  return n < 0 ? 10 : uint32Size(n);
}

function writeInt32(buf: Buffer, o: number, n: number): number {
  return n < 0 ? writeInt64(buf, o, n) : writeUint32(buf, o, n);
}

function codecNumber(c: string | number | undefined): number {
  if (c === undefined) return 0;
  if (typeof c === 'number') return c | 0;
  const n = CODECS[c];
  if (n === undefined) throw new RangeError(`unknown compression codec '${c}'`);
  return n;
}

function bytesOf(p: Buffer | Uint8Array | string | undefined): Buffer | Uint8Array {
  if (p === undefined) return EMPTY;
  return typeof p === 'string' ? Buffer.from(p, 'base64') : p;
}
const EMPTY = Buffer.alloc(0);

/** One delivery's sizes and converted numbers, computed once and used by the write pass. */
interface Sizes {
  messageId: number;
  header: number;
  batch: number;
  packed: number;
  delivery: number;
  ledgerId: number;
  entryId: number;
  firstSequenceId: number;
  codec: number;
  deliverAt: number;
  publishTime: number;
}

function lenField(bodyBytes: number): number {
  return 1 + uint32Size(bodyBytes) + bodyBytes;
}

function sizeOf(d: DeliveryFields, s: Sizes): void {
  const id = d.messageId;
  let n = 0;
  if (id) {
    const ledgerId = int64Of(id.ledgerId);
    s.ledgerId = ledgerId;
    const entryId = int64Of(id.entryId);
    s.entryId = entryId;
    if (ledgerId !== 0) n += 1 + int64Size(ledgerId);
    if (entryId !== 0) n += 1 + int64Size(entryId);
    if (id.batchIndex) n += 1 + int32Size(id.batchIndex);
    if (id.partition) n += 1 + int32Size(id.partition);
  }
  s.messageId = n;
  let total = id ? lenField(n) : 0;
  const b = d.batch;
  if (b) {
    const h = b.header;
    let hn = 0;
    if (h) {
      const seq = int64Of(h.firstSequenceId);
      s.firstSequenceId = seq;
      const deliverAt = int64Of(h.deliverAt);
      s.deliverAt = deliverAt;
      const codec = codecNumber(h.codec);
      s.codec = codec;
      if (h.count) hn += 1 + uint32Size(h.count >>> 0);
      if (seq !== 0) hn += 1 + int64Size(seq);
      if (codec !== 0) hn += 1 + int32Size(codec);
      if (h.uncompressedSize) hn += 1 + uint32Size(h.uncompressedSize >>> 0);
      if (h.key) hn += lenField(Buffer.byteLength(h.key));
      if (deliverAt !== 0) hn += 1 + int64Size(deliverAt);
    }
    s.header = hn;
    const payload = bytesOf(b.payload);
    const bn = (h ? lenField(hn) : 0) + (payload.length > 0 ? lenField(payload.length) : 0);
    s.batch = bn;
    total += lenField(bn);
  }
  const publishTime = int64Of(d.publishTime);
  s.publishTime = publishTime;
  if (publishTime !== 0) total += 1 + int64Size(publishTime);
  if (d.redeliveryCount) total += 1 + int32Size(d.redeliveryCount);
  let packed = 0;
  if (d.ackedIndexes) for (const i of d.ackedIndexes) packed += int32Size(i);
  s.packed = packed;
  if (packed > 0) total += lenField(packed);
  if (d.producerName) total += lenField(Buffer.byteLength(d.producerName));
  s.delivery = total;
}

function writeTag(buf: Buffer, o: number, field: number, wire: number): number {
  buf[o] = (field << 3) | wire;
  return o + 1;
}

function writeString(buf: Buffer, o: number, field: number, s: string): number {
  o = writeTag(buf, o, field, WIRE_LEN);
  o = writeUint32(buf, o, Buffer.byteLength(s));
  return o + buf.write(s, o, 'utf8');
}

function writeDelivery(buf: Buffer, o: number, d: DeliveryFields, s: Sizes): number {
  const id = d.messageId;
  if (id) {
    o = writeTag(buf, o, 1, WIRE_LEN);
    o = writeUint32(buf, o, s.messageId);
    if (s.ledgerId !== 0) o = writeInt64(buf, writeTag(buf, o, 1, WIRE_VARINT), s.ledgerId);
    if (s.entryId !== 0) o = writeInt64(buf, writeTag(buf, o, 2, WIRE_VARINT), s.entryId);
    if (id.batchIndex) o = writeInt32(buf, writeTag(buf, o, 3, WIRE_VARINT), id.batchIndex);
    if (id.partition) o = writeInt32(buf, writeTag(buf, o, 4, WIRE_VARINT), id.partition);
  }
  const b = d.batch;
  if (b) {
    o = writeTag(buf, o, 2, WIRE_LEN);
    o = writeUint32(buf, o, s.batch);
    const h = b.header;
    if (h) {
      o = writeTag(buf, o, 1, WIRE_LEN);
      o = writeUint32(buf, o, s.header);
      if (h.count) o = writeUint32(buf, writeTag(buf, o, 1, WIRE_VARINT), h.count >>> 0);
      if (s.firstSequenceId !== 0) o = writeInt64(buf, writeTag(buf, o, 2, WIRE_VARINT), s.firstSequenceId);
      if (s.codec !== 0) o = writeInt32(buf, writeTag(buf, o, 3, WIRE_VARINT), s.codec);
      if (h.uncompressedSize)
        o = writeUint32(buf, writeTag(buf, o, 4, WIRE_VARINT), h.uncompressedSize >>> 0);
      if (h.key) o = writeString(buf, o, 5, h.key);
      if (s.deliverAt !== 0) o = writeInt64(buf, writeTag(buf, o, 6, WIRE_VARINT), s.deliverAt);
    }
    const payload = bytesOf(b.payload);
    if (payload.length > 0) {
      o = writeTag(buf, o, 2, WIRE_LEN);
      o = writeUint32(buf, o, payload.length);
      buf.set(payload, o);
      o += payload.length;
    }
  }
  if (s.publishTime !== 0) o = writeInt64(buf, writeTag(buf, o, 3, WIRE_VARINT), s.publishTime);
  if (d.redeliveryCount) o = writeInt32(buf, writeTag(buf, o, 4, WIRE_VARINT), d.redeliveryCount);
  if (s.packed > 0) {
    o = writeTag(buf, o, 5, WIRE_LEN);
    o = writeUint32(buf, o, s.packed);
    for (const i of d.ackedIndexes!) o = writeInt32(buf, o, i);
  }
  if (d.producerName) o = writeString(buf, o, 6, d.producerName);
  return o;
}

/**
 * A ConsumeResponse whose `deliveries` holds these deliveries, in the
 * scratch buffer (valid until the next call; see the module comment).
 */
export function encodeDeliveriesResponse(deliveries: readonly DeliveryFields[]): Buffer {
  const sizes: Sizes[] = new Array(deliveries.length);
  let inner = 0;
  for (let i = 0; i < deliveries.length; i++) {
    const s: Sizes = {
      messageId: 0,
      header: 0,
      batch: 0,
      packed: 0,
      delivery: 0,
      ledgerId: 0,
      entryId: 0,
      firstSequenceId: 0,
      codec: 0,
      deliverAt: 0,
      publishTime: 0,
    };
    sizeOf(deliveries[i]!, s);
    sizes[i] = s;
    inner += lenField(s.delivery);
  }
  const total = lenField(inner);
  if (total >= TWO_32) throw new RangeError(`a ConsumeResponse of ${total} bytes is too large`);
  const buf = scratchOf(total);
  let o = 0;
  buf[o++] = RESPONSE_DELIVERIES_TAG;
  o = writeUint32(buf, o, inner);
  for (let i = 0; i < deliveries.length; i++) {
    const s = sizes[i]!;
    buf[o++] = DELIVERIES_DELIVERY_TAG;
    o = writeUint32(buf, o, s.delivery);
    o = writeDelivery(buf, o, deliveries[i]!, s);
  }
  if (o !== total) throw new Error(`ConsumeResponse encoder wrote ${o} bytes, sized ${total}`);
  return buf.subarray(0, total);
}

function scratchOf(bytes: number): Buffer {
  if (bytes > KEEP_SCRATCH_BYTES) return Buffer.allocUnsafe(bytes);
  if (scratch.length < bytes) {
    let n = scratch.length;
    while (n < bytes) n *= 2;
    scratch = Buffer.allocUnsafe(n);
  }
  return scratch;
}
