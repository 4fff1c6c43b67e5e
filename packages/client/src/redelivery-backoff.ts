import { InvalidArgumentError } from '@sluice/common';

/** Delay before the broker redelivers a negatively acknowledged message. */
export interface RedeliveryBackoff {
  /** Delay of the first redelivery (ms). */
  minDelayMs: number;
  /** Cap of the growing delay (ms). */
  maxDelayMs: number;
  /** Growth per redelivery the message already had (>= 1; 1 = a fixed delay). */
  multiplier: number;
}

/** Pulsar's default negative-ack delay is a minute; a second grows to it within a few retries. */
export const DEFAULT_NACK_BACKOFF: RedeliveryBackoff = {
  minDelayMs: 1000,
  maxDelayMs: 60_000,
  multiplier: 2,
};

export function checkBackoff(b: RedeliveryBackoff): RedeliveryBackoff {
  if (
    !(Number.isFinite(b.minDelayMs) && b.minDelayMs >= 0) ||
    !(Number.isFinite(b.maxDelayMs) && b.maxDelayMs >= b.minDelayMs) ||
    !(Number.isFinite(b.multiplier) && b.multiplier >= 1)
  ) {
    throw new InvalidArgumentError(
      `nackRedeliveryBackoff ${JSON.stringify(b)} is invalid; it needs 0 <= minDelayMs <= maxDelayMs and multiplier >= 1`,
    );
  }
  return b;
}

/** min(maxDelayMs, minDelayMs * multiplier^redeliveryCount), in whole ms. */
export function redeliveryDelay(b: RedeliveryBackoff, redeliveryCount: number): number {
  const n = Math.max(0, Math.min(redeliveryCount, 64));
  return Math.round(Math.min(b.maxDelayMs, b.minDelayMs * b.multiplier ** n));
}
