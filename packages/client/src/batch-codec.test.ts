import { CorruptDataError, InvalidArgumentError } from '@sluice/common';
import type { MessageBatch__Output } from '@sluice/proto';
import test from 'ava';
import { type BatchEntry, decodeBatch, encodeBatch } from './batch-codec.js';
import type { CompressionType } from './compression.js';

const entries: BatchEntry[] = [
  {
    key: 'k1',
    value: Buffer.from('hello'),
    properties: { a: '1' },
    eventTime: 1_700_000_000_123,
    sendTime: 5,
  },
  { key: '', value: Buffer.from([0, 255, 1]), properties: {}, eventTime: 0, sendTime: 6 },
  {
    key: 'k1',
    value: Buffer.alloc(0),
    properties: { 'x-y': 'ü' },
    eventTime: 9_007_199_254_740_991,
    sendTime: 7,
  },
];

// What the broker hands back: the header as proto-loader decodes it (numbers, enum names, Buffers).
function asDelivered(batch: ReturnType<typeof encodeBatch>): MessageBatch__Output {
  return {
    header: {
      count: batch.header!.count!,
      firstSequenceId: Number(batch.header!.firstSequenceId),
      codec: batch.header!.codec as never,
      uncompressedSize: batch.header!.uncompressedSize!,
      key: batch.header!.key!,
      deliverAt: Number(batch.header!.deliverAt),
    },
    payload: Buffer.from(batch.payload as Buffer),
  };
}

for (const compression of ['none', 'gzip', 'deflate'] as CompressionType[]) {
  test(`batch codec - round-trips keys, values, properties and times with ${compression}`, (t) => {
    const wire = encodeBatch(entries, { firstSequenceId: 42, compression, deliverAt: 0 });
    t.is(wire.header!.count, 3);
    t.is(wire.header!.firstSequenceId, 42);
    const { header, messages } = decodeBatch(asDelivered(wire));
    t.is(header.count, 3);
    t.deepEqual(
      messages.map((m) => ({ ...m, value: [...m.value] })),
      entries.map((m) => ({ ...m, value: [...m.value] })),
    );
  });
}

test('batch codec - compression shrinks repetitive batches and records the uncompressed size', (t) => {
  const many = Array.from({ length: 100 }, (_, i) => ({
    key: 'same',
    value: Buffer.from(`payload payload payload ${i % 3}`),
    properties: {},
    eventTime: 0,
    sendTime: 1,
  }));
  const plain = encodeBatch(many, { firstSequenceId: 0, compression: 'none' });
  const gz = encodeBatch(many, { firstSequenceId: 0, compression: 'gzip' });
  t.is(gz.header!.codec, 'COMPRESSION_CODEC_GZIP');
  t.is(gz.header!.uncompressedSize, (plain.payload as Buffer).length);
  t.true((gz.payload as Buffer).length < (plain.payload as Buffer).length / 4);
});

test('batch codec - header key is set only when every message shares it', (t) => {
  t.is(
    encodeBatch([entries[0]!, entries[2]!], { firstSequenceId: 0, compression: 'none' }).header!.key,
    'k1',
  );
  t.is(encodeBatch(entries, { firstSequenceId: 0, compression: 'none' }).header!.key, '');
  t.is(encodeBatch([entries[1]!], { firstSequenceId: 0, compression: 'none' }).header!.key, '');
});

test('batch codec - a count that disagrees with the payload is corrupt', (t) => {
  const wire = asDelivered(encodeBatch(entries, { firstSequenceId: 0, compression: 'none' }));
  wire.header!.count = 2;
  t.throws(() => decodeBatch(wire), { instanceOf: CorruptDataError });
});

test('batch codec - a payload that does not inflate is corrupt, an unknown codec is refused', (t) => {
  const wire = asDelivered(encodeBatch(entries, { firstSequenceId: 0, compression: 'gzip' }));
  wire.payload = Buffer.from('not gzip at all');
  t.throws(() => decodeBatch(wire), { instanceOf: CorruptDataError });
  const lz4 = asDelivered(encodeBatch(entries, { firstSequenceId: 0, compression: 'none' }));
  lz4.header!.codec = 'COMPRESSION_CODEC_LZ4';
  t.throws(() => decodeBatch(lz4), { instanceOf: InvalidArgumentError, message: /not supported/ });
});

test('batch codec - a gzip bomb beyond the declared size is refused', (t) => {
  const big = [{ key: '', value: Buffer.alloc(1_000_000), properties: {}, eventTime: 0, sendTime: 0 }];
  const wire = asDelivered(encodeBatch(big, { firstSequenceId: 0, compression: 'gzip' }));
  wire.header!.uncompressedSize = 1000;
  t.throws(() => decodeBatch(wire), { instanceOf: CorruptDataError });
});
