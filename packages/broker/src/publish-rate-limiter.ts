import { ClosedError } from '@sluice/common';
import type { PublishRateValue } from './policies.js';

/**
 * Publish rate limit of one topic as back-pressure: each batch reserves its
 * share of the next free time slot (messages/s and bytes/s, whichever is
 * slower) and the caller waits until its slot starts. Nothing is refused;
 * producers just get their receipts later and, once their in-flight window
 * is full, their streams stop being read.
 */
export class PublishRateLimiter {
  /** When the next batch may start (theoretical arrival time, epoch ms). */
  private nextFree = 0;
  private readonly waiting = new Set<{ timer: NodeJS.Timeout; reject: (err: Error) => void }>();

  constructor(private rate: PublishRateValue) {}

  get limited(): boolean {
    return this.rate.messagesPerSecond > 0 || this.rate.bytesPerSecond > 0;
  }

  update(rate: PublishRateValue): void {
    this.rate = rate;
    if (!this.limited) this.nextFree = 0;
  }

  /** Resolves when a batch of `messages` / `bytes` may be stored. */
  acquire(messages: number, bytes: number, now = Date.now()): Promise<void> {
    if (!this.limited) return Promise.resolve();
    const { messagesPerSecond: mps, bytesPerSecond: bps } = this.rate;
    const cost = Math.max(mps > 0 ? (messages * 1000) / mps : 0, bps > 0 ? (bytes * 1000) / bps : 0);
    const start = Math.max(this.nextFree, now);
    this.nextFree = start + cost;
    const wait = start - now;
    if (wait <= 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const entry = {
        timer: setTimeout(() => {
          this.waiting.delete(entry);
          resolve();
        }, wait),
        reject,
      };
      this.waiting.add(entry);
    });
  }

  /** Fail every waiting batch (the topic is closing). */
  close(reason: Error = new ClosedError('the topic closed')): void {
    for (const w of this.waiting) {
      clearTimeout(w.timer);
      w.reject(reason);
    }
    this.waiting.clear();
  }
}
