import { crc32c as nativeCrc32c } from '@node-rs/crc32';

/** CRC32C (Castagnoli), hardware-accelerated. `initial` continues a running checksum. */
export function crc32c(data: Buffer | Uint8Array, initial = 0): number {
  return nativeCrc32c(data as Buffer, initial) >>> 0;
}
