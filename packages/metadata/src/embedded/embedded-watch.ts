import type { Watch, WatchEvent } from '../metadata-store.js';

/**
 * One watcher of the embedded store. Events are queued and delivered on a
 * microtask so that a listener never runs inside the writer's call; the queue
 * is drained completely on every turn, so it cannot grow without bound unless
 * the writer never yields.
 */
export class EmbeddedWatch implements Watch {
  private queue: WatchEvent[] = [];
  private scheduled = false;
  private closed = false;

  constructor(
    private readonly prefix: string,
    /** First revision this watch delivers. */
    private readonly from: number,
    private readonly listener: (ev: WatchEvent) => void,
    private readonly onError: ((err: Error) => void) | undefined,
    private readonly detach: () => void,
  ) {}

  push(events: readonly WatchEvent[]): void {
    if (this.closed) return;
    for (const ev of events)
      if (ev.version >= this.from && ev.key.startsWith(this.prefix)) this.queue.push(ev);
    if (this.queue.length > 0 && !this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => this.drain());
    }
  }

  fail(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    this.detach();
    this.onError?.(err);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.queue = [];
    this.detach();
  }

  private drain(): void {
    this.scheduled = false;
    while (!this.closed && this.queue.length > 0) {
      const ev = this.queue.shift() as WatchEvent;
      try {
        this.listener(ev);
      } catch (err) {
        // A throwing listener must not break delivery to others or stall the store.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
