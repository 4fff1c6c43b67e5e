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

  constructor() {
    this.promise = new Promise<BatchReceipt>((resolve, reject) => {
      this.resolveFn = resolve;
      this.rejectFn = reject;
    });
  }

  resolve(receipt: BatchReceipt): void {
    this.resolveFn(receipt);
  }

  reject(err: SluiceError): void {
    this.rejectFn(err);
  }
}

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
