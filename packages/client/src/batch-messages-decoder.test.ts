import { join } from 'node:path';
import { CorruptDataError } from '@sluice/common';
import { PROTO_DIR } from '@sluice/proto';
import test from 'ava';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import { type BatchEntry, encodeBatchMessages } from './batch-codec.js';
import { decodeBatchMessageAt, decodeBatchMessages, indexBatchMessages } from './batch-messages-decoder.js';

const root = protobuf.loadSync(join(PROTO_DIR, 'sluice/v1/batch.proto'));
const BatchMessages = root.lookupType('sluice.v1.BatchMessages');

const entries: BatchEntry[] = [
  {
    key: 'k1',
    value: Buffer.from('hello'),
    properties: { a: '1', 'x-y': 'ü€' },
    eventTime: 1_700_000_000_123,
    sendTime: 5,
  },
  { key: '', value: Buffer.alloc(0), properties: {}, eventTime: 0, sendTime: 0 },
  { key: 'ключ', value: Buffer.alloc(300, 7), properties: { '': '' }, eventTime: 2 ** 53 - 1, sendTime: 1 },
];

test('batch messages decoder - reads what protobufjs writes, field for field', (t) => {
  const bytes = Buffer.from(BatchMessages.encode(BatchMessages.fromObject({ messages: entries })).finish());
  t.deepEqual(decodeBatchMessages(bytes), entries);
});

test('batch messages decoder - reads the hand encoder output and shares the batch bytes', (t) => {
  const bytes = encodeBatchMessages(entries);
  const decoded = decodeBatchMessages(bytes);
  t.deepEqual(decoded, entries);
  t.is(decoded[2]!.value.buffer, bytes.buffer);
});

test('batch messages decoder - negative times and unknown fields of every wire type', (t) => {
  const writer = protobuf.Writer.create();
  writer.uint32(0x0a).fork(); // messages[0]
  writer.uint32(0x20).int64(-5); // event_time, ten-byte two's complement
  writer.uint32((9 << 3) | 0).uint64(12345); // unknown varint
  writer.uint32((10 << 3) | 1).fixed64(1); // unknown 64-bit
  writer.uint32((11 << 3) | 2).bytes(Buffer.from('zz')); // unknown bytes
  writer.uint32((12 << 3) | 5).fixed32(3); // unknown 32-bit
  writer.uint32(0x12).bytes(Buffer.from('v'));
  writer.ldelim();
  writer.uint32((7 << 3) | 0).uint32(1); // unknown top-level field
  const decoded = decodeBatchMessages(Buffer.from(writer.finish()));
  t.deepEqual(decoded, [{ key: '', value: Buffer.from('v'), properties: {}, eventTime: -5, sendTime: 0 }]);
});

test('batch messages decoder - truncated or overlong input is corrupt data', (t) => {
  const bytes = encodeBatchMessages(entries);
  t.throws(() => decodeBatchMessages(bytes.subarray(0, bytes.length - 3)), { instanceOf: CorruptDataError });
  t.throws(() => decodeBatchMessages(Buffer.from([0x0a, 0x05, 0x12, 0x09, 0x00])), {
    instanceOf: CorruptDataError,
  });
  t.throws(() => decodeBatchMessages(Buffer.from([0x0b])), {
    instanceOf: CorruptDataError,
    message: /wire type 3/,
  });
});

/** What decoding one message at a time from the index gives, or the error indexing threw. */
function decodeIndexed(bytes: Buffer): BatchEntry[] {
  const { offsets } = indexBatchMessages(bytes);
  return offsets.map((o) => decodeBatchMessageAt(bytes, o));
}

test('batch messages index - one message at a time gives what the whole decode gives, and counts value bytes', (t) => {
  const bytes = encodeBatchMessages(entries);
  t.deepEqual(decodeIndexed(bytes), entries);
  t.is(indexBatchMessages(bytes).valueBytes, 5 + 0 + 300);
  const fromProtobufjs = Buffer.from(
    BatchMessages.encode(BatchMessages.fromObject({ messages: entries })).finish(),
  );
  t.deepEqual(decodeIndexed(fromProtobufjs), entries);
  t.deepEqual(indexBatchMessages(Buffer.alloc(0)), { offsets: [], valueBytes: 0 });
  t.throws(() => decodeBatchMessageAt(bytes, 1), { instanceOf: CorruptDataError, message: /no message at/ });
});

test('batch messages index - refuses exactly the damaged batches the whole decode refuses', (t) => {
  const bytes = encodeBatchMessages(entries);
  const outcome = <T>(read: () => T): T | 'corrupt' => {
    try {
      return read();
    } catch (err) {
      if (err instanceof CorruptDataError) return 'corrupt';
      throw err;
    }
  };
  let refused = 0;
  fc.assert(
    fc.property(
      fc.nat(bytes.length),
      fc.array(fc.tuple(fc.nat(bytes.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
      (cut, flips) => {
        const damaged = Buffer.from(bytes.subarray(0, cut));
        for (const [at, value] of flips) if (at < damaged.length) damaged[at] = value;
        const whole = outcome(() => decodeBatchMessages(damaged));
        if (whole === 'corrupt') refused++;
        t.deepEqual(
          outcome(() => decodeIndexed(damaged)),
          whole,
        );
      },
    ),
    { numRuns: 2000 },
  );
  t.true(refused > 100, `${refused} of 2000 damaged batches refused`);
});

test('batch messages index - a field running past its message or its map entry is refused, as the decode refuses it', (t) => {
  const cases = {
    // The value (3 bytes) runs past its message's 2 bytes, up to the end of the batch.
    'message overruns': [0x0a, 0x02, 0x12, 0x03, 0x61, 0x62, 0x63],
    // The key (3 bytes) runs past its map entry's 2 bytes, up to the end of the message.
    'map entry overruns': [0x0a, 0x07, 0x1a, 0x02, 0x0a, 0x03, 0x78, 0x79, 0x7a],
  };
  for (const [what, bytes] of Object.entries(cases)) {
    const message = new RegExp(what);
    t.throws(() => decodeBatchMessages(Buffer.from(bytes)), { instanceOf: CorruptDataError, message }, what);
    t.throws(() => indexBatchMessages(Buffer.from(bytes)), { instanceOf: CorruptDataError, message }, what);
  }
});
