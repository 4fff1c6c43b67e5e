import type { Position } from '@sluice/common';
import type { Delivery } from '@sluice/proto';

/** Where a consumer's output goes (a gRPC stream in the broker, an array in unit tests). */
export interface ConsumerSink {
  deliver(deliveries: Delivery[]): void;
  activeChange(isActive: boolean): void;
  /** Report a failed request; the stream stays open. */
  error(err: unknown): void;
  /** End the stream with this error (or cleanly without one). */
  close(err?: unknown): void;
}

/** An entry delivered to a consumer and not yet fully acknowledged. */
export interface PendingEntry {
  position: Position;
  /** Messages in the batch. */
  count: number;
  /** Batch indexes acknowledged so far (by this or an earlier delivery). */
  acked: Set<number>;
}

export const posKey = (p: Position): string => `${p.ledgerId}:${p.entryId}`;

let nextConsumerId = 1;

/** One attached consumer: its permits, its unacknowledged entries, its output. */
export class Consumer {
  readonly id = nextConsumerId++;
  permits = 0;
  readonly pending = new Map<string, PendingEntry>();
  /** Messages delivered and not acknowledged. */
  unackedMessages = 0;
  /** key_shared: entries at or after this position wait until everything before it is acknowledged. */
  joinBarrier: Position | undefined;
  active = false;
  closed = false;

  constructor(
    readonly name: string,
    readonly priority: number,
    readonly maxUnacked: number,
    readonly sink: ConsumerSink,
  ) {}

  /** Can take another entry now (shared also honours the max-unacked bound). */
  hasCapacity(boundUnacked: boolean): boolean {
    return !this.closed && this.permits > 0 && (!boundUnacked || this.unackedMessages < this.maxUnacked);
  }
}
