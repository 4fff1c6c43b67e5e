import { CorruptDataError } from '@sluice/common';

const FRAME_MAGIC = 0x184d2204;
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;

function corrupt(why: string): CorruptDataError {
  return new CorruptDataError(`lz4 batch payload is malformed (${why}); the producer's batch is unreadable`);
}

/**
 * Bytes the LZ4 frame(s) in `buf` decode to, found by walking the block and
 * sequence headers without decoding anything. Throws as soon as the total
 * passes `limit`, so a crafted batch is refused before the native decoder
 * (which takes no output bound) allocates for it.
 */
export function lz4DecodedSize(buf: Buffer, limit: number): number {
  let i = 0;
  let total = 0;
  const need = (n: number): void => {
    if (i + n > buf.length) throw corrupt('truncated frame');
  };
  while (i < buf.length) {
    need(4);
    const magic = buf.readUInt32LE(i);
    i += 4;
    if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC) {
      need(4);
      i += 4 + buf.readUInt32LE(i);
      continue;
    }
    if (magic !== FRAME_MAGIC) throw corrupt('bad magic');
    need(2);
    const flg = buf[i]!;
    i += 2;
    if (flg >> 6 !== 1) throw corrupt(`unknown frame version ${flg >> 6}`);
    const blockChecksum = (flg & 0x10) !== 0;
    const contentChecksum = (flg & 0x04) !== 0;
    i += (flg & 0x08 ? 8 : 0) + (flg & 0x01 ? 4 : 0) + 1;
    for (;;) {
      need(4);
      const word = buf.readUInt32LE(i);
      i += 4;
      if (word === 0) break;
      const size = word & 0x7fffffff;
      need(size + (blockChecksum ? 4 : 0));
      total += word & 0x80000000 ? size : blockDecodedSize(buf, i, i + size, limit - total);
      if (total > limit) throw tooLarge(limit);
      i += size + (blockChecksum ? 4 : 0);
    }
    if (contentChecksum) i += 4;
  }
  if (i > buf.length) throw corrupt('truncated frame');
  return total;
}

function tooLarge(limit: number): CorruptDataError {
  return new CorruptDataError(`lz4 batch payload inflates beyond its declared size ${limit}`);
}

/** Decoded size of one compressed block in buf[start, end), from its sequence headers. */
function blockDecodedSize(buf: Buffer, start: number, end: number, limit: number): number {
  let i = start;
  let out = 0;
  const length = (base: number): number => {
    let n = base;
    if (base !== 15) return n;
    for (;;) {
      if (i >= end) throw corrupt('truncated sequence length');
      const b = buf[i++]!;
      n += b;
      if (b !== 255) return n;
    }
  };
  while (i < end) {
    const token = buf[i++]!;
    const literals = length(token >> 4);
    i += literals;
    out += literals;
    if (i > end) throw corrupt('literals run past the block');
    if (out > limit) throw tooLarge(limit);
    if (i === end) break;
    if (i + 2 > end) throw corrupt('truncated match offset');
    i += 2;
    out += length(token & 15) + 4;
    if (out > limit) throw tooLarge(limit);
  }
  return out;
}
