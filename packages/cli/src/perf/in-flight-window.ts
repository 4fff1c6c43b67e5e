/**
 * Bounds the sends awaiting their receipt. `acquire` returns undefined when a
 * slot is free (no promise on the fast path), else a promise that resolves
 * when a receipt frees one. One waiter at a time: each producer loop owns its
 * window and waits before taking another send.
 */
export class InFlightWindow {
  private inFlight = 0;
  private waiter: (() => void) | undefined;
  private drained: (() => void) | undefined;

  constructor(readonly size: number) {}

  get count(): number {
    return this.inFlight;
  }

  acquire(): Promise<void> | undefined {
    if (this.inFlight < this.size) {
      this.inFlight++;
      return undefined;
    }
    if (this.waiter) throw new Error('InFlightWindow has one waiter at a time');
    return new Promise<void>((resolve) => {
      this.waiter = () => {
        this.inFlight++;
        resolve();
      };
    });
  }

  release(): void {
    this.inFlight--;
    const waiter = this.waiter;
    if (waiter) {
      this.waiter = undefined;
      waiter();
    } else if (this.inFlight === 0 && this.drained) {
      const drained = this.drained;
      this.drained = undefined;
      drained();
    }
  }

  /** Resolves when nothing is in flight. */
  drain(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const previous = this.drained;
      this.drained = () => {
        previous?.();
        resolve();
      };
    });
  }
}
