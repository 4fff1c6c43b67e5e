import { type Clock, SessionLostError, type Timer } from '@sluice/common';
import type { Session } from '../metadata-store.js';

type State = 'alive' | 'lost' | 'closed';

/**
 * An in-process lease. The keepalive is a timer every ttl/3; if a tick comes
 * later than the TTL (the event loop was blocked that long), the lease would
 * have expired on a real etcd, so the session is lost here as well.
 */
export class EmbeddedSession implements Session {
  /** Ephemeral keys currently bound to this session (maintained by the store). */
  readonly keys = new Set<string>();
  private state: State = 'alive';
  private readonly listeners: ((err: Error) => void)[] = [];
  private lastRenewedAt: number;
  private timer: Timer | undefined;

  constructor(
    readonly id: string,
    readonly ttlMs: number,
    private readonly clock: Clock,
    private readonly onEnd: (session: EmbeddedSession, err: Error | undefined) => void,
  ) {
    this.lastRenewedAt = clock.now();
    this.schedule();
  }

  get lost(): boolean {
    return this.state === 'lost';
  }

  onLost(listener: (err: Error) => void): void {
    this.listeners.push(listener);
  }

  async close(): Promise<void> {
    if (this.state !== 'alive') return;
    this.state = 'closed';
    this.timer?.clear();
    this.onEnd(this, undefined);
  }

  /** The store is closing: stop the timer without touching keys. */
  stop(): void {
    if (this.state === 'alive') this.state = 'closed';
    this.timer?.clear();
  }

  expire(err: Error): void {
    if (this.state !== 'alive') return;
    this.state = 'lost';
    this.timer?.clear();
    this.onEnd(this, err);
    for (const l of this.listeners.splice(0)) l(err);
  }

  private schedule(): void {
    this.timer = this.clock.setTimeout(() => this.tick(), Math.max(1, Math.floor(this.ttlMs / 3)));
  }

  private tick(): void {
    if (this.state !== 'alive') return;
    const late = this.clock.now() - this.lastRenewedAt;
    if (late > this.ttlMs) {
      this.expire(
        new SessionLostError(`session ${this.id} was not renewed for ${late} ms (TTL ${this.ttlMs} ms)`),
      );
      return;
    }
    this.lastRenewedAt = this.clock.now();
    this.schedule();
  }
}
