import type { SluiceError } from '@sluice/common';

/**
 * Where the messages of one stored batch landed: message i of the batch has
 * id `${prefix}${firstIndex + i}${suffix}` ("ledger:entry:index[:partition]").
 */
export interface BatchReceipt {
  prefix: string;
  firstIndex: number;
  suffix: string;
}

/**
 * The outcome of one batch, shared by all of its messages: each `send`
 * derives its own promise from it with `messageIdAt(i)`, so a batch costs one
 * settlement instead of a promise executor, two resolving functions and a
 * record per message, and each id string is built only when its send settles.
 */
export class BatchOutcome {
  readonly promise: Promise<BatchReceipt>;
  private resolveFn!: (receipt: BatchReceipt) => void;
  private rejectFn!: (err: SluiceError) => void;
  /** Messages sent with a callback: their batch indexes and callbacks, side by side. */
  private indexes: number[] | undefined;
  private callbacks: SendCallback[] | undefined;

  constructor() {
    this.promise = new Promise<BatchReceipt>((resolve, reject) => {
      this.resolveFn = resolve;
      this.rejectFn = reject;
    });
  }

  /** Call `cb` with the id of message `index` of this batch (or the error) once it settles. */
  onSettle(index: number, cb: SendCallback): void {
    // The callbacks report a refusal; without this, a batch sent only with callbacks would leave its rejected promise unhandled.
    if (!this.callbacks || !this.indexes) {
      this.promise.catch(ignoreRefusal);
      this.callbacks = [];
      this.indexes = [];
    }
    this.indexes.push(index);
    this.callbacks.push(cb);
  }

  resolve(receipt: BatchReceipt): void {
    this.resolveFn(receipt);
    // One microtask for all callbacks, after the producer's own bookkeeping, as a promise's handlers run.
    if (this.callbacks) queueMicrotask(() => this.runCallbacks(undefined, receipt));
  }

  reject(err: SluiceError): void {
    this.rejectFn(err);
    if (this.callbacks) queueMicrotask(() => this.runCallbacks(err, undefined));
  }

  private runCallbacks(err: SluiceError | undefined, receipt: BatchReceipt | undefined): void {
    const cbs = this.callbacks!;
    const idx = this.indexes!;
    for (let i = 0; i < cbs.length; i++) {
      try {
        if (err) cbs[i]!(err, undefined);
        else cbs[i]!(undefined, receipt!.prefix + (receipt!.firstIndex + idx[i]!) + receipt!.suffix);
      } catch (thrown) {
        // A throwing callback surfaces as an uncaught exception, as in any Node callback API; the others still run.
        queueMicrotask(() => {
          throw thrown;
        });
      }
    }
  }
}

const ignoreRefusal = (): void => {};

/** Called once per message sent with `Producer.sendWithCallback`: the message id, or the error. */
export type SendCallback = (err: SluiceError | undefined, messageId: string | undefined) => void;

/**
 * One formatter per batch index, made once and shared by every batch of the
 * process: no closure per message. Its length is bounded by the largest
 * batch sent (a producer's `batching.maxMessages`).
 */
const formatters: ((r: BatchReceipt) => string)[] = [];

export function messageIdAt(index: number): (r: BatchReceipt) => string {
  for (let i = formatters.length; i <= index; i++) {
    formatters.push((r) => r.prefix + (r.firstIndex + i) + r.suffix);
  }
  return formatters[index]!;
}

/** The receipt of a batch stored as entry `entryId` of ledger `ledgerId` from batch index `firstIndex`. */
export function batchReceipt(
  ledgerId: number,
  entryId: number,
  firstIndex: number,
  partition: number,
): BatchReceipt {
  return { prefix: `${ledgerId}:${entryId}:`, firstIndex, suffix: partition >= 0 ? `:${partition}` : '' };
}
