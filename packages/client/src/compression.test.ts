import { randomBytes } from 'node:crypto';
import { CorruptDataError } from '@sluice/common';
import test from 'ava';
import { compress, decompress } from './compression.js';
import { lz4DecodedSize } from './lz4-frame.js';

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
