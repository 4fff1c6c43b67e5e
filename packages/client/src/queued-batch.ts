import { formatMessageId } from '@sluice/common';
import type { DeliveredMessageId } from './ack-grouping.js';
import { decodeBatchMessageAt } from './batch-messages-decoder.js';
import { ORIGIN, type ReceivedMessage } from './message.js';

/** What the messages of one delivered entry share. */
export interface BatchOrigin {
  topic: string;
  /** Partition index, or -1 for a non-partitioned topic. */
  partition: number;
  /** Index of the partition consumer in its consumer. */
  slot: number;
  /** Stream generation of the partition consumer the entry arrived on. */
  generation: number;
  ledgerId: number;
  entryId: number;
  /** Batch index of the entry's first message. */
  firstIndex: number;
  publishTime: number;
  redeliveryCount: number;
  producerName: string;
}

/**
 * The messages of one delivered entry waiting in a receiver queue, kept as the
 * entry's bytes until the application takes them. A message object made as it
 * is taken dies young; one made on arrival lived through the queue and was
 * copied by every young collection meanwhile (a deep queue: thousands of them).
 */
export class QueuedBatch {
  private next: number;
  /** Messages still to hand out. */
  private left = 0;

  constructor(
    readonly origin: BatchOrigin,
    /** The uncompressed BatchMessages, checked to parse (`indexBatch`). */
    private readonly raw: Buffer,
    /** Where each message starts in `raw`. */
    private readonly offsets: readonly number[],
    /** Messages before this index are not handed out (a reader already took them). */
    from: number,
    /** Batch indexes the broker knows are acknowledged: not handed out. */
    private readonly acked: ReadonlySet<number> | undefined,
  ) {
    this.next = from;
    for (let i = from; i < offsets.length; i++) if (!acked?.has(origin.firstIndex + i)) this.left++;
  }

  /** Messages still to hand out. */
  get remaining(): number {
    return this.left;
  }

  /** The next message to hand out, or undefined once all were. */
  take(): ReceivedMessage | undefined {
    while (this.next < this.offsets.length) {
      const i = this.next++;
      if (this.acked?.has(this.origin.firstIndex + i)) continue;
      this.left--;
      return this.message(i);
    }
    return undefined;
  }

  private message(i: number): ReceivedMessage {
    const o = this.origin;
    const m = decodeBatchMessageAt(this.raw, this.offsets[i]!);
    const id: DeliveredMessageId = {
      ledgerId: o.ledgerId,
      entryId: o.entryId,
      batchIndex: o.firstIndex + i,
      partition: o.partition,
      entrySize: this.offsets.length,
    };
    return {
      id: formatMessageId(id),
      key: m.key,
      value: m.value,
      properties: m.properties,
      publishTime: o.publishTime,
      eventTime: m.eventTime,
      redeliveryCount: o.redeliveryCount,
      producerName: o.producerName,
      topic: o.topic,
      [ORIGIN]: { messageId: id, generation: o.generation, partitionIndex: o.partition, slot: o.slot },
    };
  }
}
