import { InvalidArgumentError } from '@sluice/common';

/**
 * The send schedule of one producer at a fixed rate: send i is due at
 * `startMs + i / rate`, whatever happened to the sends before it. Latency is
 * measured from that intended time, not from when the send actually left, so
 * a stall (full window, GC pause, slow broker) shows up in every message it
 * delayed instead of only in the one that was in flight (no coordinated
 * omission). A rate of 0 means "as fast as the window allows": each send is
 * intended the moment it can go.
 */
export class RateScheduler {
  private nextIndex = 0;
  private readonly intervalMs: number;

  constructor(
    /** Messages per second; 0 = unlimited. */
    readonly rate: number,
    /** Intended time of send 0, on the clock the caller passes to the other methods (ms). */
    private readonly startMs: number,
  ) {
    if (!Number.isFinite(rate) || rate < 0) {
      throw new InvalidArgumentError(
        `rate '${rate}' must be a number of messages per second ≥ 0 (0 = unlimited)`,
      );
    }
    this.intervalMs = rate > 0 ? 1000 / rate : 0;
  }

  get unlimited(): boolean {
    return this.rate === 0;
  }

  /** Sends taken so far. */
  get taken(): number {
    return this.nextIndex;
  }

  /** Intended time of the next send (for an unlimited rate: `nowMs`). */
  peek(nowMs: number): number {
    return this.unlimited ? nowMs : this.startMs + this.nextIndex * this.intervalMs;
  }

  /** Milliseconds until the next send is due at `nowMs`; 0 when it is due (or overdue). */
  msUntilNext(nowMs: number): number {
    return Math.max(0, this.peek(nowMs) - nowMs);
  }

  /** Sends due at `nowMs` that have not been taken (behind schedule when > 1). */
  due(nowMs: number): number {
    if (this.unlimited) return 1;
    if (nowMs < this.startMs) return 0;
    return Math.max(0, Math.floor((nowMs - this.startMs) / this.intervalMs) + 1 - this.nextIndex);
  }

  /** Take the next send and return its intended time (ms). */
  take(nowMs: number): number {
    const at = this.peek(nowMs);
    this.nextIndex++;
    return at;
  }
}
