import { setTimeout as sleep } from 'node:timers/promises';

/** Monotonic time and sleeping, injectable so the drivers can be tested against a controlled clock. */
export interface PerfClock {
  /** Monotonic milliseconds (performance.now() in production). */
  now(): number;
  /** The wall-clock epoch ms of a `now()` reading: what goes into payloads and is compared across processes. */
  epochMs(monotonicMs: number): number;
  /** Resolves after `ms`, or early (without error) when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: PerfClock = {
  now: () => performance.now(),
  epochMs: (monotonicMs) => performance.timeOrigin + monotonicMs,
  sleep: (ms, signal) => sleep(ms, undefined, signal ? { signal } : undefined).catch(() => undefined),
};
