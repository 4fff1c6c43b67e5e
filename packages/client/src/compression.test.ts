import { randomBytes } from 'node:crypto';
import { CorruptDataError } from '@sluice/common';
import test from 'ava';
import { compress, decompress } from './compression.js';
import { lz4DecodedSize } from './lz4-frame.js';
import { zstdDecodedSizeBound } from './zstd-frame.js';

test('compression - the lz4 frame walk finds the exact decoded size', async (t) => {
  const inputs = [
    Buffer.alloc(0),
    Buffer.from('hello hello hello hello'),
    randomBytes(70_000),
    Buffer.alloc(1_000_000, 9),
    Buffer.concat([randomBytes(300_000), Buffer.alloc(300_000, 1), randomBytes(5)]),
  ];
  for (const input of inputs) {
    const frame = await compress('lz4', input);
    t.is(lz4DecodedSize(frame, input.length), input.length);
    t.deepEqual(await decompress('COMPRESSION_CODEC_LZ4', frame, input.length), input);
  }
});

test('compression - an lz4 batch that inflates past its declared size is refused before decoding', async (t) => {
  const bomb = await compress('lz4', Buffer.alloc(8 * 1024 * 1024));
  t.throws(() => lz4DecodedSize(bomb, 1000), { instanceOf: CorruptDataError, message: /beyond/ });
  await t.throwsAsync(decompress('COMPRESSION_CODEC_LZ4', bomb, 1000), {
    instanceOf: CorruptDataError,
    message: /beyond its declared size/,
  });
  await t.throwsAsync(
    decompress('COMPRESSION_CODEC_LZ4', bomb.subarray(0, bomb.length - 7), 8 * 1024 * 1024),
    {
      instanceOf: CorruptDataError,
    },
  );
});

test('compression - the zstd header walk bounds real frames within their declared size', async (t) => {
  for (const n of [0, 1, 1000, 128 * 1024, 128 * 1024 + 1, 3 * 1024 * 1024 + 17]) {
    const input = Buffer.alloc(n, 'sluice zstd ');
    const frame = await compress('zstd', input);
    t.true(zstdDecodedSizeBound(frame, n) >= n);
    t.deepEqual(await decompress('COMPRESSION_CODEC_ZSTD', frame, n), input);
  }
});

test('compression - a zstd batch that inflates past its declared size is refused', async (t) => {
  const bomb = await compress('zstd', Buffer.alloc(8 * 1024 * 1024));
  t.throws(() => zstdDecodedSizeBound(bomb, 1000), { instanceOf: CorruptDataError, message: /beyond/ });
  await t.throwsAsync(decompress('COMPRESSION_CODEC_ZSTD', bomb, 1000), {
    instanceOf: CorruptDataError,
    message: /beyond/,
  });
});

test('compression - zstd payloads of several frames decode exactly; RLE bombs are refused by the stream decoder', async (t) => {
  // Concatenated frames are valid zstd; without recorded content sizes their header bound (128 KiB per
  // compressed block) exceeds the declared size, so they take the bounded stream decoder.
  const parts = [0, 1, 2].map((i) => Buffer.from(`frame ${i} `.repeat(500)));
  const frames = Buffer.concat(await Promise.all(parts.map((p) => compress('zstd', p))));
  const expected = Buffer.concat(parts);
  t.deepEqual(await decompress('COMPRESSION_CODEC_ZSTD', frames, expected.length), expected);
  await t.throwsAsync(decompress('COMPRESSION_CODEC_ZSTD', frames, expected.length - 1), {
    instanceOf: CorruptDataError,
  });
  // A hand-built frame of RLE blocks that states 6.4 MB of output for a declared 1000 bytes.
  const magic = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
  const fhd = Buffer.from([0x00, 0x58]); // no checksum, no content size, a 2 MiB window
  const rle = (size: number, last: boolean) => {
    const h = (size << 3) | (1 << 1) | (last ? 1 : 0);
    return Buffer.from([h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff, 0x61]);
  };
  const rleBomb = Buffer.concat([
    magic,
    fhd,
    ...Array.from({ length: 64 }, (_, i) => rle(100_000, i === 63)),
  ]);
  t.throws(() => zstdDecodedSizeBound(rleBomb, 1000), { instanceOf: CorruptDataError, message: /beyond/ });
  await t.throwsAsync(decompress('COMPRESSION_CODEC_ZSTD', rleBomb, 1000), {
    instanceOf: CorruptDataError,
    message: /beyond/,
  });
});
