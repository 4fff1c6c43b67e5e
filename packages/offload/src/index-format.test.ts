import { CorruptDataError } from '@sluice/common';
import test from 'ava';
import {
  type BlockIndexEntry,
  decodeIndex,
  encodeIndex,
  findBlock,
  type LedgerIndex,
} from './index-format.js';

function sampleIndex(): LedgerIndex {
  const blocks: BlockIndexEntry[] = [
    { firstEntryId: 0, entryCount: 10, offset: 0, length: 1000 },
    { firstEntryId: 10, entryCount: 1, offset: 1000, length: 6_000_000 },
    { firstEntryId: 11, entryCount: 89, offset: 6_001_000, length: 999 },
  ];
  return {
    metadata: {
      formatVersion: 1,
      ledgerId: 42,
      uuid: 'abc-123',
      lastEntryId: 99,
      entryCount: 100,
      length: 5_990_000,
      dataObjectSize: 6_001_999,
      blockSize: 1 << 20,
      properties: { topic: 'persistent://t/n/x', ünïcode: 'välue' },
      offloadedAt: 1_700_000_000_000,
    },
    blocks,
  };
}

test('index format - round trips metadata and block table', (t) => {
  const index = sampleIndex();
  t.deepEqual(decodeIndex(encodeIndex(index), 'test'), index);
});

test('index format - empty ledger has no blocks', (t) => {
  const index = sampleIndex();
  index.blocks = [];
  index.metadata = { ...index.metadata, lastEntryId: -1, entryCount: 0, length: 0, dataObjectSize: 0 };
  t.deepEqual(decodeIndex(encodeIndex(index), 'test'), index);
});

test('index format - corruption and truncation are detected', (t) => {
  const buf = encodeIndex(sampleIndex());
  for (let i = 0; i < buf.length; i += 7) {
    const damaged = Buffer.from(buf);
    damaged[i]! ^= 0x10;
    t.throws(() => decodeIndex(damaged, 'test'), { instanceOf: CorruptDataError });
  }
  for (const len of [0, 8, buf.length - 1]) {
    t.throws(() => decodeIndex(buf.subarray(0, len), 'x.index'), { instanceOf: CorruptDataError });
  }
});

test('index format - block table must cover the ledger exactly', (t) => {
  const index = sampleIndex();
  index.metadata.lastEntryId = 100;
  const err = t.throws(() => decodeIndex(encodeIndex(index), 'x.index'), { instanceOf: CorruptDataError });
  t.regex(err!.message, /metadata says 0\.\.100/);
});

test('index format - findBlock locates the block of each entry', (t) => {
  const { blocks } = sampleIndex();
  t.is(findBlock(blocks, 0), 0);
  t.is(findBlock(blocks, 9), 0);
  t.is(findBlock(blocks, 10), 1);
  t.is(findBlock(blocks, 11), 2);
  t.is(findBlock(blocks, 99), 2);
});
