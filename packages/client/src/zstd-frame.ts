import { CorruptDataError } from '@sluice/common';

const FRAME_MAGIC = 0xfd2fb528;
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
/** RFC 8878 §3.1.1.2.4: no block decodes to more than 128 KiB. */
const MAX_BLOCK_DECODED = 128 * 1024;

function corrupt(why: string): CorruptDataError {
  return new CorruptDataError(`zstd batch payload is malformed (${why}); the producer's batch is unreadable`);
}

function tooLarge(limit: number): CorruptDataError {
  return new CorruptDataError(`zstd batch payload can inflate beyond its declared size ${limit}`);
}

/**
 * An upper bound of the bytes the zstd frame(s) in `buf` decode to, found by
 * walking frame and block headers without decoding (RFC 8878): raw and RLE
 * blocks state their decoded size, a compressed block decodes to at most
 * 128 KiB, and a frame that records its content size is held to it. Throws
 * as soon as the bound passes what `declared` allows (the declared size
 * rounded up to whole blocks, which any real compressor stays within), so a
 * crafted batch is refused before the native decoder, which takes no output
 * bound, allocates for it.
 */
export function zstdDecodedSizeBound(buf: Buffer, declared: number): number {
  const limit = Math.ceil(Math.max(declared, 1) / MAX_BLOCK_DECODED) * MAX_BLOCK_DECODED;
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
    need(1);
    const fhd = buf[i]!;
    i += 1;
    const fcsFlag = fhd >> 6;
    const singleSegment = (fhd & 0x20) !== 0;
    const checksum = (fhd & 0x04) !== 0;
    const dictIdSize = [0, 1, 2, 4][fhd & 0x03]!;
    const fcsSize = fcsFlag === 0 ? (singleSegment ? 1 : 0) : [0, 2, 4, 8][fcsFlag]!;
    i += singleSegment ? 0 : 1;
    i += dictIdSize;
    need(fcsSize);
    let frameTotal = 0;
    let contentSize = -1;
    if (fcsSize === 1) contentSize = buf[i]!;
    else if (fcsSize === 2) contentSize = buf.readUInt16LE(i) + 256;
    else if (fcsSize === 4) contentSize = buf.readUInt32LE(i);
    else if (fcsSize === 8) contentSize = Number(buf.readBigUInt64LE(i));
    i += fcsSize;
    if (contentSize > limit) throw tooLarge(declared);
    for (;;) {
      need(3);
      const header = buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16);
      i += 3;
      const last = (header & 1) !== 0;
      const type = (header >> 1) & 3;
      const size = header >>> 3;
      if (type === 3) throw corrupt('reserved block type');
      if (type === 1) {
        need(1);
        i += 1;
        frameTotal += size;
      } else {
        need(size);
        i += size;
        frameTotal += type === 0 ? size : MAX_BLOCK_DECODED;
      }
      if (total + frameTotal > limit && (contentSize < 0 || total + contentSize > limit)) {
        throw tooLarge(declared);
      }
      if (last) break;
    }
    total += contentSize >= 0 ? Math.min(contentSize, frameTotal) : frameTotal;
    if (checksum) {
      need(4);
      i += 4;
    }
  }
  return total;
}
