import { type Clock, systemClock } from './clock.js';
import { isRetriable, TimeoutError } from './errors.js';

/**
 * The one retry policy of Sluice. Defaults: 100 ms first delay doubling to at
 * most 5 s with ±20% jitter (jitter spreads reconnect storms after a broker or
 * bookie restart), retrying only errors marked retriable.
 */
export interface RetryOptions {
  /** Attempts after the first; Infinity retries until the deadline or abort. */
  retries?: number;
  minDelayMs?: number;
  maxDelayMs?: number;
  factor?: number;
  /** Fraction of the delay added or removed at random. */
  jitter?: number;
  /** Give up after this many ms overall. */
  deadlineMs?: number;
  signal?: AbortSignal;
  shouldRetry?: (err: unknown, attempt: number) => boolean;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  clock?: Clock;
}

export const DEFAULT_RETRY = {
  retries: 10,
  minDelayMs: 100,
  maxDelayMs: 5000,
  factor: 2,
  jitter: 0.2,
} as const;

/** Delay before retry number `attempt` (0-based). */
export function backoffDelay(attempt: number, opts: RetryOptions = {}): number {
  const min = opts.minDelayMs ?? DEFAULT_RETRY.minDelayMs;
  const max = opts.maxDelayMs ?? DEFAULT_RETRY.maxDelayMs;
  const factor = opts.factor ?? DEFAULT_RETRY.factor;
  const jitter = opts.jitter ?? DEFAULT_RETRY.jitter;
  const base = Math.min(max, min * factor ** attempt);
  return Math.max(0, Math.round(base * (1 + jitter * (Math.random() * 2 - 1))));
}

export async function retry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const clock = opts.clock ?? systemClock;
  const retries = opts.retries ?? DEFAULT_RETRY.retries;
  const shouldRetry = opts.shouldRetry ?? ((err: unknown) => isRetriable(err));
  const started = clock.now();
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (opts.signal?.aborted || attempt >= retries || !shouldRetry(err, attempt)) throw err;
      let delay = backoffDelay(attempt, opts);
      if (opts.deadlineMs !== undefined) {
        const left = opts.deadlineMs - (clock.now() - started);
        if (left <= 0) throw err;
        delay = Math.min(delay, left);
      }
      opts.onRetry?.(err, attempt, delay);
      await clock.sleep(delay);
    }
  }
}

/** Reject with a TimeoutError naming `what` when `promise` takes longer than `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what} did not complete within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
