/**
 * A least-recently-used cache of decoded blocks, bounded by bytes and shared
 * by every reader of one offloader. Concurrent misses on the same block share
 * one fetch, so a burst of readers costs one GET per block.
 */
import type { DecodedBlock } from './block-format.js';

interface Cached {
  block: DecodedBlock;
  bytes: number;
}

export class BlockCache {
  private readonly entries = new Map<string, Cached>();
  private readonly loading = new Map<string, Promise<DecodedBlock>>();
  private used = 0;

  constructor(readonly maxBytes: number) {}

  get usedBytes(): number {
    return this.used;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The cached block for `key`, marking it most recently used. */
  get(key: string): DecodedBlock | undefined {
    const hit = this.entries.get(key);
    if (!hit) return undefined;
    this.entries.delete(key);
    this.entries.set(key, hit);
    return hit.block;
  }

  set(key: string, block: DecodedBlock, bytes: number): void {
    this.remove(key);
    // A block larger than the whole cache would only evict everything else.
    if (bytes > this.maxBytes) return;
    this.entries.set(key, { block, bytes });
    this.used += bytes;
    for (const [oldest, value] of this.entries) {
      if (this.used <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.used -= value.bytes;
    }
  }

  /**
   * The block for `key` from the cache, from a fetch already under way, or
   * from `load` (whose result is cached). `onMiss` runs only when `load` does.
   */
  async getOrLoad(
    key: string,
    load: () => Promise<{ block: DecodedBlock; bytes: number }>,
    onMiss?: () => void,
  ): Promise<DecodedBlock> {
    const hit = this.get(key);
    if (hit) return hit;
    const pending = this.loading.get(key);
    if (pending) return pending;
    onMiss?.();
    const promise = load()
      .then(({ block, bytes }) => {
        this.set(key, block, bytes);
        return block;
      })
      .finally(() => this.loading.delete(key));
    this.loading.set(key, promise);
    return promise;
  }

  remove(key: string): void {
    const old = this.entries.get(key);
    if (!old) return;
    this.entries.delete(key);
    this.used -= old.bytes;
  }

  /** Drop every block whose key starts with `prefix` (a deleted offload). */
  removePrefix(prefix: string): void {
    for (const key of [...this.entries.keys()]) if (key.startsWith(prefix)) this.remove(key);
  }

  clear(): void {
    this.entries.clear();
    this.used = 0;
  }
}
