import { randomUUID } from 'node:crypto';
import { InvalidArgumentError, type Logger, parseMessageId } from '@sluice/common';
import type { ConnectionPool } from './connection-pool.js';
import { Consumer, type SeekPosition } from './consumer.js';
import type { TopicLookup } from './lookup.js';
import type { Message } from './message.js';

export interface ReaderOptions {
  topic: string;
  /** 'earliest', 'latest' (default) or a message id to start at (inclusive). */
  startMessageId?: 'earliest' | 'latest' | string;
  /** Messages buffered per partition ahead of the application (default 1000). */
  receiverQueueSize?: number;
  readerName?: string;
}

/**
 * A non-durable reader: no subscription is stored and nothing is
 * acknowledged; it reads the topic from a position the application chooses.
 */
export class Reader implements AsyncIterable<Message> {
  private constructor(private readonly consumer: Consumer) {}

  static async create(
    pool: ConnectionPool,
    lookup: TopicLookup,
    opts: ReaderOptions,
    ctx: { logger: Logger; operationTimeoutMs: number },
  ): Promise<Reader> {
    const start = opts.startMessageId ?? 'latest';
    if (typeof start !== 'string')
      throw new InvalidArgumentError("startMessageId must be 'earliest', 'latest' or an id");
    const startMessageId = start === 'earliest' || start === 'latest' ? undefined : parseMessageId(start);
    const consumer = await Consumer.create(
      pool,
      lookup,
      {
        topic: opts.topic,
        subscription: `reader-${randomUUID().slice(0, 8)}`,
        type: 'exclusive',
        initialPosition: start === 'earliest' ? 'earliest' : 'latest',
        ...(opts.readerName ? { consumerName: opts.readerName } : {}),
        ...(opts.receiverQueueSize ? { receiverQueueSize: opts.receiverQueueSize } : {}),
        nonDurable: true,
        startMessageId,
      },
      ctx,
    );
    return new Reader(consumer);
  }

  get topic(): string {
    return this.consumer.topic;
  }

  /** The next message, or `undefined` after `timeoutMs` without one. */
  readNext(timeoutMs?: number): Promise<Message | undefined> {
    return this.consumer.receive(timeoutMs);
  }

  /** Move the reader: to a message id, a publish time, or the earliest / latest message. */
  seek(position: SeekPosition): Promise<void> {
    return this.consumer.seek(position);
  }

  [Symbol.asyncIterator](): AsyncIterator<Message> {
    return this.consumer[Symbol.asyncIterator]();
  }

  close(): Promise<void> {
    return this.consumer.close();
  }
}
