import murmurhash from 'murmurhash';

/**
 * The one key hash of Sluice (partition routing, key_shared ranges, namespace
 * bundles): Murmur3 x86 32-bit over the UTF-8 bytes of the key, seed 0, read
 * as an unsigned 32-bit integer. Documented in proto/sluice/v1/batch.proto so
 * generated clients in any language place keys exactly like the SDK.
 */
export function murmur3(key: string | Uint8Array, seed = 0): number {
  // murmurhash v2.x encodes strings with TextEncoder (UTF-8) and returns `>>> 0`.
  return murmurhash.v3(key, seed);
}
