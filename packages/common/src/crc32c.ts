import { createRequire } from 'node:module';
import { crc32c as nativeCrc32c } from '@node-rs/crc32';

// A table-driven JS CRC32C (crc-32) beats the native call below this size:
// the call's fixed cost dominates the record headers and index records the
// storage checksums by the tens of thousands (24–52 bytes: ~30 vs ~120 ns).
const SMALL_INPUT_BYTES = 192;
const jsCrc32c = createRequire(import.meta.url)('crc-32/crc32c') as {
  buf(data: Uint8Array, seed?: number): number;
};

/** CRC32C (Castagnoli), hardware-accelerated for large inputs. `initial` continues a running checksum. */
export function crc32c(data: Buffer | Uint8Array, initial = 0): number {
  if (data.length < SMALL_INPUT_BYTES) return jsCrc32c.buf(data, initial | 0) >>> 0;
  return nativeCrc32c(data as Buffer, initial) >>> 0;
}
