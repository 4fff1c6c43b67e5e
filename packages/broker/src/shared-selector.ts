import type { Consumer } from './consumer.js';
import type { ConsumerSelector } from './consumer-selector.js';

/** Shared: round robin over consumers with permits and room under their max-unacked bound. */
export class SharedSelector implements ConsumerSelector {
  readonly kind = 'shared' as const;
  readonly boundUnacked = true;
  private consumers: readonly Consumer[] = [];
  private next = 0;

  consumersChanged(consumers: readonly Consumer[]): void {
    this.consumers = consumers.filter((c) => !c.closed);
    this.next = 0;
  }

  pick(): Consumer | undefined {
    const n = this.consumers.length;
    for (let i = 0; i < n; i++) {
      const c = this.consumers[(this.next + i) % n]!;
      if (c.hasCapacity(true)) {
        this.next = (this.next + i + 1) % n;
        return c;
      }
    }
    return undefined;
  }

  anyCapacity(): boolean {
    return this.consumers.some((c) => c.hasCapacity(true));
  }
}
