import test from 'ava';
import { murmur3 } from './index.js';

// Reference vectors of Murmur3 x86_32 (SMHasher's MurmurHash3_x86_32).
const vectors: [string, number, number][] = [
  ['', 0, 0],
  ['', 1, 0x514e28b7],
  ['', 0xffffffff, 0x81f16f39],
  ['\0\0\0\0', 0, 0x2362f9de],
  ['a', 0x9747b28c, 0x7fa09ea6],
  ['ab', 0x9747b28c, 0x74875592],
  ['abc', 0x9747b28c, 0xc84a62dd],
  ['abcd', 0x9747b28c, 0xf0478627],
  ['aaaa', 0x9747b28c, 0x5a97808a],
  ['Hello, world!', 0x9747b28c, 0x24884cba],
  ['ππππππππ', 0x9747b28c, 0xd58063c1],
  ['a'.repeat(256), 0x9747b28c, 0x37405bdc],
  ['abc', 0, 0xb3dd93fa],
  ['abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq', 0, 0xee925b90],
  ['The quick brown fox jumps over the lazy dog', 0x9747b28c, 0x2fa826cd],
];

test('murmur3 - matches the reference vectors', (t) => {
  for (const [key, seed, expected] of vectors) t.is(murmur3(key, seed), expected, JSON.stringify(key));
});

test('murmur3 - hashes strings as their UTF-8 bytes, unsigned, seed 0 by default', (t) => {
  const key = 'clé-🔑';
  t.is(murmur3(key), murmur3(Buffer.from(key, 'utf8')));
  t.is(murmur3('hello'), 0x248bfa47);
  for (const k of ['x', 'order-17', '日本']) {
    const h = murmur3(k);
    t.true(Number.isInteger(h) && h >= 0 && h <= 0xffffffff);
  }
});
