import { CorruptDataError } from '@sluice/common';
import test from 'ava';
import fc from 'fast-check';
import { BLOCK_HEADER_SIZE, BlockBuilder, decodeBlock, ENTRY_HEADER_SIZE } from './block-format.js';

function buildBlock(payloads: Buffer[], first = 0): Buffer {
  const builder = new BlockBuilder(1 << 20);
  for (const [i, p] of payloads.entries()) builder.add(first + i, p);
  return builder.finish();
}

test('block format - round trips entries byte for byte', (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 2000 }), { minLength: 1, maxLength: 50 }),
      fc.nat(1_000_000_000),
      (arrays, first) => {
        const payloads = arrays.map((a) => Buffer.from(a));
        const block = buildBlock(payloads, first);
        const decoded = decodeBlock(block, 'test', { firstEntryId: first, entryCount: payloads.length });
        t.is(decoded.firstEntryId, first);
        t.is(decoded.entries.length, payloads.length);
        decoded.entries.forEach((e, i) => {
          t.is(e.entryId, first + i);
          t.true(e.payload.equals(payloads[i]!));
        });
      },
    ),
    { numRuns: 50 },
  );
});

test('block format - builder resets after finish and sizes blocks to the target', (t) => {
  const builder = new BlockBuilder(1000);
  t.true(builder.wouldFit(5000), 'an empty block takes any entry');
  builder.add(7, Buffer.alloc(400));
  t.true(builder.wouldFit(400));
  builder.add(8, Buffer.alloc(400));
  t.false(builder.wouldFit(400));
  t.is(builder.size, BLOCK_HEADER_SIZE + 2 * (ENTRY_HEADER_SIZE + 400));
  const block = builder.finish();
  t.is(block.length, BLOCK_HEADER_SIZE + 2 * (ENTRY_HEADER_SIZE + 400));
  t.true(builder.isEmpty);
  builder.add(9, Buffer.from('x'));
  t.is(decodeBlock(builder.finish(), 'test').firstEntryId, 9);
});

test('block format - builder rejects non-consecutive entries', (t) => {
  const builder = new BlockBuilder();
  builder.add(0, Buffer.from('a'));
  t.throws(() => builder.add(2, Buffer.from('b')), { instanceOf: CorruptDataError });
});

test('block format - any flipped bit is detected', (t) => {
  const block = buildBlock([
    Buffer.from('hello'),
    Buffer.from('world!'),
    Buffer.alloc(0),
    Buffer.from('end'),
  ]);
  for (let byte = 0; byte < block.length; byte++) {
    for (const bit of [0, 3, 7]) {
      const damaged = Buffer.from(block);
      damaged[byte]! ^= 1 << bit;
      t.throws(() => decodeBlock(damaged, 'test', { firstEntryId: 0, entryCount: 4 }), {
        instanceOf: CorruptDataError,
      });
    }
  }
});

test('block format - truncated and extended blocks are rejected', (t) => {
  const block = buildBlock([Buffer.from('hello'), Buffer.from('world')]);
  for (const len of [0, 10, BLOCK_HEADER_SIZE, block.length - 1]) {
    const err = t.throws(() => decodeBlock(block.subarray(0, len), 'obj@0'), {
      instanceOf: CorruptDataError,
    });
    t.regex(err!.message, /obj@0/);
  }
  t.throws(() => decodeBlock(Buffer.concat([block, Buffer.alloc(1)]), 'test'), {
    instanceOf: CorruptDataError,
  });
});

test('block format - a valid block the index does not expect is rejected', (t) => {
  const block = buildBlock([Buffer.from('a'), Buffer.from('b')], 10);
  const err = t.throws(() => decodeBlock(block, 'test', { firstEntryId: 12, entryCount: 2 }), {
    instanceOf: CorruptDataError,
  });
  t.regex(err!.message, /index expects 12\+2/);
});
