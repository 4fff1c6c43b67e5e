import { join } from 'node:path';
import { CorruptDataError, InvalidArgumentError } from '@sluice/common';
import { type MessageBatch__Output, PROTO_DIR } from '@sluice/proto';
import test from 'ava';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import {
  type BatchEntry,
  decodeBatch,
  encodeBatch,
  encodeBatchMessages,
  varintSize,
  writeVarint,
} from './batch-codec.js';
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
function asDelivered(batch: Awaited<ReturnType<typeof encodeBatch>>): MessageBatch__Output {
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

for (const compression of ['none', 'lz4', 'zstd', 'gzip', 'deflate'] as CompressionType[]) {
  test(`batch codec - round-trips keys, values, properties and times with ${compression}`, async (t) => {
    const wire = await encodeBatch(entries, { firstSequenceId: 42, compression, deliverAt: 0 });
    t.is(wire.header!.count, 3);
    t.is(wire.header!.firstSequenceId, 42);
    const { header, messages } = await decodeBatch(asDelivered(wire));
    t.is(header.count, 3);
    t.deepEqual(
      messages.map((m) => ({ ...m, value: [...m.value] })),
      entries.map((m) => ({ ...m, value: [...m.value] })),
    );
  });
}

test('batch codec - every codec shrinks repetitive batches and records the uncompressed size', async (t) => {
  const many = Array.from({ length: 100 }, (_, i) => ({
    key: 'same',
    value: Buffer.from(`payload payload payload ${i % 3}`),
    properties: {},
    eventTime: 0,
    sendTime: 1,
  }));
  const plain = await encodeBatch(many, { firstSequenceId: 0, compression: 'none' });
  const wires = { lz4: 'LZ4', zstd: 'ZSTD', gzip: 'GZIP', deflate: 'DEFLATE' } as const;
  for (const [compression, wire] of Object.entries(wires)) {
    const packed = await encodeBatch(many, {
      firstSequenceId: 0,
      compression: compression as CompressionType,
    });
    t.is(packed.header!.codec, `COMPRESSION_CODEC_${wire}`);
    t.is(packed.header!.uncompressedSize, (plain.payload as Buffer).length);
    t.true((packed.payload as Buffer).length < (plain.payload as Buffer).length / 4, compression);
  }
});

test('batch codec - header key is set only when every message shares it', async (t) => {
  const key = async (list: BatchEntry[]) =>
    (await encodeBatch(list, { firstSequenceId: 0, compression: 'none' })).header!.key;
  t.is(await key([entries[0]!, entries[2]!]), 'k1');
  t.is(await key(entries), '');
  t.is(await key([entries[1]!]), '');
});

test('batch codec - a count that disagrees with the payload is corrupt', async (t) => {
  const wire = asDelivered(await encodeBatch(entries, { firstSequenceId: 0, compression: 'none' }));
  wire.header!.count = 2;
  await t.throwsAsync(decodeBatch(wire), { instanceOf: CorruptDataError });
});

test('batch codec - a payload that does not inflate is corrupt, an unknown codec is refused', async (t) => {
  for (const compression of ['gzip', 'lz4', 'zstd'] as CompressionType[]) {
    const wire = asDelivered(await encodeBatch(entries, { firstSequenceId: 0, compression }));
    wire.payload = Buffer.from(`not ${compression} at all`);
    await t.throwsAsync(decodeBatch(wire), { instanceOf: CorruptDataError }, compression);
  }
  const unknown = asDelivered(await encodeBatch(entries, { firstSequenceId: 0, compression: 'none' }));
  unknown.header!.codec = 9 as never;
  await t.throwsAsync(decodeBatch(unknown), {
    instanceOf: InvalidArgumentError,
    message: /codec 9 is not supported/,
  });
});

test('batch codec - a batch inflating beyond its declared size is refused', async (t) => {
  const big = [{ key: '', value: Buffer.alloc(1_000_000), properties: {}, eventTime: 0, sendTime: 0 }];
  for (const compression of ['gzip', 'deflate', 'lz4', 'zstd'] as CompressionType[]) {
    const wire = asDelivered(await encodeBatch(big, { firstSequenceId: 0, compression }));
    wire.header!.uncompressedSize = 1000;
    await t.throwsAsync(decodeBatch(wire), { instanceOf: CorruptDataError }, compression);
  }
});

test('batch codec - the hand encoder matches protobufjs field for field', (t) => {
  const type = protobuf
    .loadSync(join(PROTO_DIR, 'sluice/v1/batch.proto'))
    .lookupType('sluice.v1.BatchMessages');
  const tricky: BatchEntry[] = [
    ...entries,
    {
      key: 'ключ-🔑',
      value: Buffer.alloc(300, 7),
      properties: { '': '', long: 'v'.repeat(200), ü: '🔑' },
      eventTime: -1,
      sendTime: 2 ** 35 + 3,
    },
    { key: '', value: Buffer.alloc(0), properties: {}, eventTime: 0, sendTime: 0 },
  ];
  const mine = encodeBatchMessages(tricky);
  const theirs = type.encode({ messages: tricky }).finish();
  const opts = { longs: Number, defaults: true, bytes: Array };
  t.deepEqual(type.toObject(type.decode(mine), opts), type.toObject(type.decode(theirs), opts));
});

test('batch codec - varints of every safe integer read back with protobufjs, sized exactly', (t) => {
  const around = (b: number) => fc.integer({ min: -3, max: 3 }).map((d) => Math.min(2 ** 53 - 1, b + d));
  const values = fc.oneof(
    fc.maxSafeInteger(),
    fc.integer({ min: -(2 ** 31), max: 2 ** 31 }),
    fc.constantFrom(0, 127, 128, Date.now()),
    ...[7, 14, 21, 28, 32, 35, 42, 49, 53].map((b) => around(2 ** b)),
  );
  fc.assert(
    fc.property(values, (v) => {
      const buf = Buffer.alloc(16);
      const end = writeVarint(buf, 1, v);
      t.is(end - 1, varintSize(v));
      const read = protobuf.Reader.create(buf.subarray(1, end)).int64();
      t.is(Number(read.toString()), v);
    }),
    { numRuns: 2000 },
  );
});
