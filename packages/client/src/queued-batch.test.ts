import test from 'ava';
import { type BatchEntry, encodeBatchMessages } from './batch-codec.js';
import { indexBatchMessages } from './batch-messages-decoder.js';
import { ORIGIN } from './message.js';
import { type BatchOrigin, QueuedBatch } from './queued-batch.js';

const origin: BatchOrigin = {
  topic: 'persistent://public/default/q-partition-2',
  partition: 2,
  slot: 1,
  generation: 4,
  ledgerId: 9,
  entryId: 11,
  firstIndex: 0,
  publishTime: 1_700_000_000_000,
  redeliveryCount: 1,
  producerName: 'p',
};

function batchOf(n: number): { raw: Buffer; offsets: number[] } {
  const entries: BatchEntry[] = Array.from({ length: n }, (_, i) => ({
    key: `k${i}`,
    value: Buffer.from(`v${i}`),
    properties: i === 0 ? { a: 'b' } : ({} as Record<string, string>),
    eventTime: i,
    sendTime: 100 + i,
  }));
  const raw = encodeBatchMessages(entries);
  return { raw, offsets: indexBatchMessages(raw).offsets };
}

function drain(b: QueuedBatch): string[] {
  const out: string[] = [];
  for (let m = b.take(); m; m = b.take()) out.push(m.value.toString());
  return out;
}

test('queued batch - hands out each message once, in order, as the application message', (t) => {
  const { raw, offsets } = batchOf(3);
  const b = new QueuedBatch(origin, raw, offsets, 0, undefined);
  t.is(b.remaining, 3);
  const m = b.take()!;
  t.like(m, {
    id: '9:11:0:2',
    key: 'k0',
    properties: { a: 'b' },
    publishTime: origin.publishTime,
    eventTime: 0,
    redeliveryCount: 1,
    producerName: 'p',
    topic: origin.topic,
  });
  t.is(m.value.toString(), 'v0');
  t.is(m.value.buffer, raw.buffer, 'the value is a view of the batch');
  t.deepEqual(m[ORIGIN], {
    messageId: { ledgerId: 9, entryId: 11, batchIndex: 0, partition: 2, entrySize: 3 },
    generation: 4,
    partitionIndex: 2,
    slot: 1,
  });
  t.is(b.remaining, 2);
  t.deepEqual(drain(b), ['v1', 'v2']);
  t.is(b.remaining, 0);
  t.is(b.take(), undefined);
});

test('queued batch - skips what a reader took and what the broker knows is acknowledged', (t) => {
  const { raw, offsets } = batchOf(6);
  // Batch indexes of a redelivered entry count from its first message's index.
  const b = new QueuedBatch({ ...origin, firstIndex: 10 }, raw, offsets, 2, new Set([10, 13, 15]));
  t.is(b.remaining, 2, 'index 0 and 1 are before the reader, 3 and 5 acknowledged');
  const ids: string[] = [];
  for (let m = b.take(); m; m = b.take()) ids.push(`${m.id} ${m.value}`);
  t.deepEqual(ids, ['9:11:12:2 v2', '9:11:14:2 v4']);
  t.is(new QueuedBatch(origin, raw, offsets, 6, undefined).remaining, 0);
});
