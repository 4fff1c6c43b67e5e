import { CorruptDataError } from '@sluice/common';
import {
  type BatchHeader__Output,
  int64Size,
  type MessageBatch,
  type MessageBatch__Output,
  writeInt64,
} from '@sluice/proto';
import {
  type BatchMessagesIndex,
  decodeBatchMessages,
  indexBatchMessages,
} from './batch-messages-decoder.js';
import { type CompressionType, compress, compressionCodec, decompress } from './compression.js';

/** One user message as it travels inside a batch (proto `BatchMessage`). */
export interface BatchEntry {
  key: string;
  value: Buffer;
  properties: Record<string, string>;
  /** Application event time (epoch ms); 0 = unset. */
  eventTime: number;
  /** Time the producer sent the message (epoch ms). */
  sendTime: number;
}

export interface EncodeBatchOptions {
  firstSequenceId: number;
  compression: CompressionType;
  /** Deliver no earlier than this (epoch ms); 0 = now. */
  deliverAt?: number;
}

/**
 * Build the MessageBatch a producer sends: the messages serialized as
 * BatchMessages, compressed, behind a header the broker reads without
 * unpacking (count, first sequence id, codec, sizes, a shared key).
 */
export async function encodeBatch(
  messages: readonly BatchEntry[],
  opts: EncodeBatchOptions,
): Promise<MessageBatch> {
  const codec = compressionCodec(opts.compression);
  const raw = encodeBatchMessages(messages);
  const payload = await compress(opts.compression, raw);
  const sharedKey = batchKey(messages);
  return {
    header: {
      count: messages.length,
      firstSequenceId: opts.firstSequenceId,
      codec,
      uncompressedSize: raw.length,
      key: sharedKey,
      deliverAt: opts.deliverAt ?? 0,
    },
    payload,
  };
}

/** The key every message of a batch shares, or '' when they differ (or have none). */
export function batchKey(messages: readonly BatchEntry[]): string {
  const firstKey = messages[0]?.key ?? '';
  if (firstKey === '') return '';
  for (let i = 1; i < messages.length; i++) if (messages[i]!.key !== firstKey) return '';
  return firstKey;
}

/** Bytes of `v` (a safe integer) as a protobuf varint; negatives take the 10 bytes of two's complement. */
export const varintSize = int64Size;

/** Write `v` (a safe integer) as a varint; returns the next offset. */
export const writeVarint = writeInt64;

/** Bytes of a length-delimited field with a one-byte tag. */
export const fieldSize = (len: number): number => 1 + varintSize(len) + len;

function propertiesSize(properties: Record<string, string>): number {
  let n = 0;
  for (const k in properties) n += fieldSize(mapEntrySize(k, properties[k] ?? ''));
  return n;
}

const mapEntrySize = (k: string, v: string): number =>
  fieldSize(Buffer.byteLength(k, 'utf8')) + fieldSize(Buffer.byteLength(v, 'utf8'));

export function writeString(buf: Buffer, o: number, tag: number, s: string): number {
  buf[o++] = tag;
  o = writeVarint(buf, o, Buffer.byteLength(s, 'utf8'));
  return o + buf.write(s, o, 'utf8');
}

/** Serialized sizes of a `BatchMessages`: each message's body and the whole. */
export interface BatchMessagesLayout {
  sizes: number[];
  total: number;
}

export function measureBatchMessages(messages: readonly BatchEntry[]): BatchMessagesLayout {
  const sizes = new Array<number>(messages.length);
  let total = 0;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    let n = 0;
    if (m.key !== '') n += fieldSize(Buffer.byteLength(m.key, 'utf8'));
    if (m.value.length > 0) n += fieldSize(m.value.length);
    n += propertiesSize(m.properties);
    if (m.eventTime !== 0) n += 1 + varintSize(m.eventTime);
    if (m.sendTime !== 0) n += 1 + varintSize(m.sendTime);
    sizes[i] = n;
    total += fieldSize(n);
  }
  return { sizes, total };
}

/**
 * Write `BatchMessages` at `offset` of `buf` (room measured by
 * `measureBatchMessages`); returns the offset after it. Fields at their
 * proto3 default are left out, as proto3 allows.
 */
export function writeBatchMessages(
  buf: Buffer,
  offset: number,
  messages: readonly BatchEntry[],
  layout: BatchMessagesLayout,
): number {
  let o = offset;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    buf[o++] = 0x0a; // field 1 (messages), length-delimited
    o = writeVarint(buf, o, layout.sizes[i]!);
    if (m.key !== '') o = writeString(buf, o, 0x0a, m.key);
    if (m.value.length > 0) {
      buf[o++] = 0x12; // field 2 (value)
      o = writeVarint(buf, o, m.value.length);
      o += m.value.copy(buf, o);
    }
    for (const k in m.properties) {
      const v = m.properties[k] ?? '';
      buf[o++] = 0x1a; // field 3 (properties), one map entry
      o = writeVarint(buf, o, mapEntrySize(k, v));
      o = writeString(buf, o, 0x0a, k);
      o = writeString(buf, o, 0x12, v);
    }
    if (m.eventTime !== 0) {
      buf[o++] = 0x20; // field 4 (event_time), varint
      o = writeVarint(buf, o, m.eventTime);
    }
    if (m.sendTime !== 0) {
      buf[o++] = 0x28; // field 5 (send_time), varint
      o = writeVarint(buf, o, m.sendTime);
    }
  }
  if (o - offset !== layout.total) {
    throw new Error(`batch encoder wrote ${o - offset} bytes, sized ${layout.total}`);
  }
  return o;
}

/**
 * Serialize `BatchMessages` by hand into one exactly sized buffer. The
 * protobufjs writer builds a list of operation objects per field and a fork
 * per nested message: several short-lived objects per message, which at
 * 100k+ messages/s was a large share of the producer's CPU and GC.
 */
export function encodeBatchMessages(messages: readonly BatchEntry[]): Buffer {
  const layout = measureBatchMessages(messages);
  const buf = Buffer.allocUnsafe(layout.total);
  writeBatchMessages(buf, 0, messages, layout);
  return buf;
}

/** Unpack a delivered MessageBatch into its messages (in send order). */
export async function decodeBatch(batch: MessageBatch__Output): Promise<{
  header: BatchHeader__Output;
  messages: BatchEntry[];
}> {
  const { header, raw } = await unpack(batch);
  const messages = parse(() => decodeBatchMessages(raw));
  checkCount(header, messages.length);
  return { header, messages };
}

/** A delivered MessageBatch, checked to parse, whose messages are decoded one at a time. */
export interface IndexedBatch extends BatchMessagesIndex {
  header: BatchHeader__Output;
  /** The uncompressed BatchMessages. */
  raw: Buffer;
}

/**
 * Unpack a delivered MessageBatch and check every message in it, without
 * decoding them yet: `decodeBatchMessageAt(raw, offsets[i])` gives message i.
 */
export async function indexBatch(batch: MessageBatch__Output): Promise<IndexedBatch> {
  const { header, raw } = await unpack(batch);
  const index = parse(() => indexBatchMessages(raw));
  checkCount(header, index.offsets.length);
  return { header, raw, ...index };
}

async function unpack(batch: MessageBatch__Output): Promise<{ header: BatchHeader__Output; raw: Buffer }> {
  const header = batch.header;
  if (!header) throw new CorruptDataError('delivered batch has no header');
  return { header, raw: await decompress(header.codec, batch.payload, header.uncompressedSize) };
}

function parse<T>(read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof CorruptDataError) throw err;
    throw new CorruptDataError(`delivered batch does not parse as BatchMessages: ${String(err)}`, {
      cause: err,
    });
  }
}

function checkCount(header: BatchHeader__Output, count: number): void {
  if (count !== header.count) {
    throw new CorruptDataError(`delivered batch holds ${count} messages but its header says ${header.count}`);
  }
}

/** Serialized size of one message inside a batch, for batch size limits. */
export function entrySize(entry: BatchEntry): number {
  let props = 0;
  for (const k in entry.properties) props += k.length + (entry.properties[k]?.length ?? 0) + 8;
  return entry.value.length + Buffer.byteLength(entry.key) + props + 24;
}
