import type { Position } from '@sluice/common';
import type { Consumer } from './consumer.js';

export type SubscriptionKind = 'exclusive' | 'failover' | 'shared' | 'key_shared';

/** What a selector sees of an entry: enough to route it without unpacking the batch. */
export interface RoutableEntry {
  position: Position;
  key: string;
  count: number;
}

/**
 * Routes entries of one subscription to its consumers. `pick` returns
 * undefined to hold an entry for a later round; `held` carries, within one
 * dispatch round, the consumers that already had an entry held, so that no
 * later entry overtakes it (ordering).
 */
export interface ConsumerSelector {
  readonly kind: SubscriptionKind;
  /** Whether the shared max-unacked bound applies. */
  readonly boundUnacked: boolean;
  consumersChanged(consumers: readonly Consumer[]): void;
  pick(
    entry: RoutableEntry,
    held: Set<Consumer | 'all'>,
    markDeleteNext: Position | undefined,
  ): Consumer | undefined;
  /** Some consumer could take an entry now. */
  anyCapacity(): boolean;
}
