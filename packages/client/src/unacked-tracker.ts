import { formatMessageId, type MessageId } from '@sluice/common';
import { compareMessageIds } from './message.js';

/**
 * Messages the application took and has not acknowledged, oldest first, for
 * the ack timeout: whatever stays unacknowledged longer than `timeoutMs` is
 * handed to `expire` (the consumer nacks it, so the broker redelivers it).
 * A Map keeps insertion order, so the expired ones are always at its front.
 */
export class UnackedTracker {
  private readonly taken = new Map<string, { id: MessageId; at: number }>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly timeoutMs: number,
    /** Past this many tracked messages the oldest expire early: the tracker stays bounded. */
    private readonly maxTracked: number,
    private readonly expire: (ids: MessageId[]) => void,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.taken.size;
  }

  add(id: MessageId): void {
    const key = formatMessageId(id);
    this.taken.delete(key);
    this.taken.set(key, { id, at: this.now() });
    if (this.taken.size > this.maxTracked) {
      const [oldest] = this.taken.values();
      this.taken.delete(formatMessageId(oldest!.id));
      this.expire([oldest!.id]);
    }
    this.arm();
  }

  remove(id: MessageId): void {
    this.taken.delete(formatMessageId(id));
  }

  /** A cumulative ack settles everything up to and including `id`. */
  removeUpTo(id: MessageId): void {
    for (const [key, t] of this.taken) if (compareMessageIds(t.id, id) <= 0) this.taken.delete(key);
  }

  clear(): void {
    this.taken.clear();
  }

  close(): void {
    this.clear();
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(): void {
    if (this.timer) return;
    // Checking a few times per timeout bounds the lateness at a quarter of it without a timer per message.
    const tick = Math.max(10, Math.min(1000, Math.floor(this.timeoutMs / 4)));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.sweep();
      if (this.taken.size > 0) this.arm();
    }, tick);
    this.timer.unref?.();
  }

  private sweep(): void {
    const deadline = this.now() - this.timeoutMs;
    const expired: MessageId[] = [];
    for (const [key, t] of this.taken) {
      if (t.at > deadline) break;
      this.taken.delete(key);
      expired.push(t.id);
    }
    if (expired.length > 0) this.expire(expired);
  }
}
