import test from 'ava';
import { readInt64LE, writeInt64LE } from './int64.js';

test('int64 - writes the same bytes as writeBigInt64LE for safe integers, negative ones included', (t) => {
  const values = [
    0,
    1,
    -1,
    127,
    2 ** 31 - 1,
    2 ** 31,
    2 ** 32 - 1,
    2 ** 32,
    2 ** 32 + 5,
    2 ** 53 - 1,
    -(2 ** 53) + 1,
    -(2 ** 32),
    -12345678901,
  ];
  for (const v of values) {
    const a = Buffer.alloc(12, 0xaa);
    const b = Buffer.alloc(12, 0xaa);
    writeInt64LE(a, v, 2);
    b.writeBigInt64LE(BigInt(v), 2);
    t.deepEqual(a, b, `${v}`);
    t.is(Number(a.readBigInt64LE(2)), v);
  }
});

test('int64 - readInt64LE reads back every safe integer writeInt64LE wrote, negative ones included', (t) => {
  const buf = Buffer.alloc(8);
  for (const v of [0, 1, -1, 2 ** 32 - 1, 2 ** 32, -(2 ** 32), 2 ** 53 - 1, -(2 ** 53) + 1, 1234567890123]) {
    writeInt64LE(buf, v, 0);
    t.is(readInt64LE(buf, 0), v);
    t.is(readInt64LE(buf, 0), Number(buf.readBigInt64LE(0)));
  }
});
