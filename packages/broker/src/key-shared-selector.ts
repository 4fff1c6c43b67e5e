import { comparePositions, murmur3, type Position } from '@sluice/common';
import type { Consumer } from './consumer.js';
import type { ConsumerSelector, RoutableEntry } from './consumer-selector.js';

/** Points per consumer on the hash ring: enough to spread keys evenly over a handful of consumers. */
const POINTS_PER_CONSUMER = 100;

/**
 * Key_shared: a consistent-hash ring over consumers (Murmur3 of the batch
 * key, the same hash as everywhere else). Per-key order holds because a
 * consumer that had an entry held receives nothing later in the round, and a
 * consumer that joined takes no entry at or after its join position until
 * everything before it is acknowledged (the keys it took over may still be
 * in flight at their previous consumer).
 */
export class KeySharedSelector implements ConsumerSelector {
  readonly kind = 'key_shared' as const;
  readonly boundUnacked = true;
  private ring: { point: number; consumer: Consumer }[] = [];
  private consumers: readonly Consumer[] = [];

  consumersChanged(consumers: readonly Consumer[]): void {
    this.consumers = consumers.filter((c) => !c.closed);
    const ring: { point: number; consumer: Consumer }[] = [];
    for (const c of this.consumers) {
      for (let i = 0; i < POINTS_PER_CONSUMER; i++)
        ring.push({ point: murmur3(`${c.name}#${c.id}#${i}`), consumer: c });
    }
    ring.sort((a, b) => a.point - b.point);
    this.ring = ring;
  }

  consumerFor(key: string): Consumer | undefined {
    if (this.ring.length === 0) return undefined;
    const h = murmur3(key);
    let lo = 0;
    let hi = this.ring.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ring[mid]!.point < h) lo = mid + 1;
      else hi = mid;
    }
    return this.ring[lo % this.ring.length]!.consumer;
  }

  pick(
    entry: RoutableEntry,
    held: Set<Consumer | 'all'>,
    markDeleteNext: Position | undefined,
  ): Consumer | undefined {
    const c = this.consumerFor(entry.key);
    if (!c) return undefined;
    if (held.has(c)) return undefined;
    const barrier = c.joinBarrier;
    if (barrier) {
      if (markDeleteNext && comparePositions(markDeleteNext, barrier) >= 0) c.joinBarrier = undefined;
      else if (comparePositions(entry.position, barrier) >= 0) {
        held.add(c);
        return undefined;
      }
    }
    if (!c.hasCapacity(true)) {
      held.add(c);
      return undefined;
    }
    return c;
  }

  anyCapacity(): boolean {
    return this.consumers.some((c) => c.hasCapacity(true));
  }
}
