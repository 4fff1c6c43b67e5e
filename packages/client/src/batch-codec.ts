import { join } from 'node:path';
import { CorruptDataError } from '@sluice/common';
import type { BatchHeader__Output, MessageBatch, MessageBatch__Output } from '@sluice/proto';
import { PROTO_DIR } from '@sluice/proto';
import protobuf from 'protobufjs';
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

const root = protobuf.loadSync(join(PROTO_DIR, 'sluice/v1/batch.proto'));
const BatchMessagesType = root.lookupType('sluice.v1.BatchMessages');

interface Long {
  toNumber(): number;
}
const toNumber = (v: number | Long | null | undefined): number =>
  v == null ? 0 : typeof v === 'number' ? v : v.toNumber();

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
  const raw = Buffer.from(BatchMessagesType.encode({ messages }).finish());
  const payload = await compress(opts.compression, raw);
  const firstKey = messages[0]?.key ?? '';
  const sharedKey = firstKey !== '' && messages.every((m) => m.key === firstKey) ? firstKey : '';
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

/** Unpack a delivered MessageBatch into its messages (in send order). */
export async function decodeBatch(batch: MessageBatch__Output): Promise<{
  header: BatchHeader__Output;
  messages: BatchEntry[];
}> {
  const header = batch.header;
  if (!header) throw new CorruptDataError('delivered batch has no header');
  const raw = await decompress(header.codec, batch.payload, header.uncompressedSize);
  let decoded: { messages?: Record<string, unknown>[] };
  try {
    decoded = BatchMessagesType.decode(raw) as unknown as typeof decoded;
  } catch (err) {
    throw new CorruptDataError(`delivered batch does not parse as BatchMessages: ${String(err)}`, {
      cause: err,
    });
  }
  const list = decoded.messages ?? [];
  if (list.length !== header.count) {
    throw new CorruptDataError(
      `delivered batch holds ${list.length} messages but its header says ${header.count}`,
    );
  }
  const messages = list.map(
    (m): BatchEntry => ({
      key: (m.key as string | undefined) ?? '',
      value: (m.value as Buffer | undefined) ?? Buffer.alloc(0),
      properties: { ...((m.properties as Record<string, string> | undefined) ?? {}) },
      eventTime: toNumber(m.eventTime as number | Long | undefined),
      sendTime: toNumber(m.sendTime as number | Long | undefined),
    }),
  );
  return { header, messages };
}

/** Serialized size of one message inside a batch, for batch size limits. */
export function entrySize(entry: BatchEntry): number {
  let props = 0;
  for (const k in entry.properties) props += k.length + (entry.properties[k]?.length ?? 0) + 8;
  return entry.value.length + Buffer.byteLength(entry.key) + props + 24;
}
