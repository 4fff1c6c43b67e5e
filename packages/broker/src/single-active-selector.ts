import type { Consumer } from './consumer.js';
import type { ConsumerSelector, RoutableEntry, SubscriptionKind } from './consumer-selector.js';

/** Exclusive and failover: one active consumer (lowest priority, then name) gets every entry in order. */
export class SingleActiveSelector implements ConsumerSelector {
  readonly boundUnacked = false;
  private active: Consumer | undefined;

  constructor(readonly kind: SubscriptionKind) {}

  consumersChanged(consumers: readonly Consumer[]): void {
    const next = [...consumers]
      .filter((c) => !c.closed)
      .sort(
        (a, b) => a.priority - b.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : a.id - b.id),
      )[0];
    if (next === this.active) return;
    const previous = this.active;
    this.active = next;
    if (previous && !previous.closed) {
      previous.active = false;
      previous.sink.activeChange(false);
    }
    if (next) {
      next.active = true;
      if (this.kind === 'failover') next.sink.activeChange(true);
    }
  }

  activeConsumer(): Consumer | undefined {
    return this.active;
  }

  pick(_entry: RoutableEntry, held: Set<Consumer | 'all'>): Consumer | undefined {
    if (held.has('all')) return undefined;
    const c = this.active;
    if (c?.hasCapacity(false)) return c;
    held.add('all');
    return undefined;
  }

  anyCapacity(): boolean {
    return this.active?.hasCapacity(false) ?? false;
  }
}
