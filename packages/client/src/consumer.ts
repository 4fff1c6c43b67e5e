import {
  ClosedError,
  InvalidArgumentError,
  type Logger,
  type MessageId,
  parseMessageId,
  type SluiceError,
} from '@sluice/common';
import type { InitialPosition__Output, SubscriptionType__Output } from '@sluice/proto';
import type { ConnectionPool } from './connection-pool.js';
import type { TopicLookup } from './lookup.js';
import { type Message, ORIGIN, originOf, type ReceivedMessage } from './message.js';
import { type NackBackoff, PartitionConsumer } from './partition-consumer.js';
import { fullTopicName, partitionTopicName } from './topic-name.js';

export type SubscriptionType = 'exclusive' | 'shared' | 'failover' | 'key_shared';
export type InitialPosition = 'earliest' | 'latest';

export interface ConsumerOptions {
  topic: string;
  subscription: string;
  /** Default exclusive. */
  type?: SubscriptionType;
  /** Where a new subscription starts (default latest). */
  initialPosition?: InitialPosition;
  consumerName?: string;
  /** Failover priority: lower is preferred. */
  priority?: number;
  /** Messages buffered per partition ahead of the application (default 1000). */
  receiverQueueSize?: number;
  /** Shared subscriptions: unacknowledged messages the broker lets this consumer hold (0 = broker default). */
  maxUnackedMessages?: number;
  /** How long acks are grouped before they go on the wire (default 10 ms). */
  ackGroupTimeMs?: number;
  /** Redelivery delay after a nack, doubling with the redelivery count (default 1 s … 60 s). */
  nackBackoff?: Partial<NackBackoff>;
  /** Called for request errors that leave the consumer running (e.g. a refused ack). */
  onError?: (err: SluiceError) => void;
}

/** Internal: readers are non-durable consumers that start at a given message. */
export interface ConsumerInternals {
  nonDurable?: boolean;
  startMessageId?: MessageId | undefined;
}

const SUBSCRIPTION_TYPES: Record<SubscriptionType, SubscriptionType__Output> = {
  exclusive: 'SUBSCRIPTION_TYPE_EXCLUSIVE',
  shared: 'SUBSCRIPTION_TYPE_SHARED',
  failover: 'SUBSCRIPTION_TYPE_FAILOVER',
  key_shared: 'SUBSCRIPTION_TYPE_KEY_SHARED',
};

const INITIAL_POSITIONS: Record<InitialPosition, InitialPosition__Output> = {
  earliest: 'INITIAL_POSITION_EARLIEST',
  latest: 'INITIAL_POSITION_LATEST',
};

type Waiter = (msg: ReceivedMessage | undefined) => void;

/**
 * A consumer of a subscription: `for await (const msg of consumer)`. On a
 * partitioned topic it subscribes to every partition and merges them; acks
 * find their partition by the message id.
 */
export class Consumer implements AsyncIterable<Message> {
  private readonly queue: ReceivedMessage[] = [];
  private queueHead = 0;
  private waiters: Waiter[] = [];
  private closed = false;
  private failure: SluiceError | undefined;
  private parts: PartitionConsumer[] = [];
  private partitionCount = 0;

  private constructor(
    readonly topic: string,
    readonly subscription: string,
    private readonly logger: Logger,
  ) {}

  static async create(
    pool: ConnectionPool,
    lookup: TopicLookup,
    opts: ConsumerOptions & ConsumerInternals,
    ctx: { logger: Logger; operationTimeoutMs: number },
  ): Promise<Consumer> {
    if (!opts.topic) throw new InvalidArgumentError('subscribe needs a topic');
    if (!opts.subscription) throw new InvalidArgumentError('subscribe needs a subscription name');
    const type = SUBSCRIPTION_TYPES[opts.type ?? 'exclusive'];
    if (!type) {
      throw new InvalidArgumentError(
        `subscription type '${opts.type}' is unknown; use exclusive, shared, failover or key_shared`,
      );
    }
    const initialPosition = INITIAL_POSITIONS[opts.initialPosition ?? 'latest'];
    if (!initialPosition) {
      throw new InvalidArgumentError(
        `initial position '${opts.initialPosition}' is unknown; use earliest or latest`,
      );
    }
    const receiverQueueSize = opts.receiverQueueSize ?? 1000;
    if (!Number.isInteger(receiverQueueSize) || receiverQueueSize < 1) {
      throw new InvalidArgumentError('receiverQueueSize must be a positive integer');
    }
    const topic = fullTopicName(opts.topic);
    const consumer = new Consumer(topic, opts.subscription, ctx.logger);
    const partitions = await lookup.partitions(topic);
    consumer.partitionCount = partitions;
    const names =
      partitions > 0 ? Array.from({ length: partitions }, (_, i) => partitionTopicName(topic, i)) : [topic];
    const onError =
      opts.onError ??
      ((err: SluiceError) => ctx.logger.warn({ err: err.message, topic }, 'consumer request failed'));
    consumer.parts = names.map(
      (name, i) =>
        new PartitionConsumer(pool, lookup, {
          topic: name,
          partition: partitions > 0 ? i : -1,
          subscription: opts.subscription,
          type,
          consumerName: opts.consumerName ?? '',
          priority: opts.priority ?? 0,
          initialPosition,
          nonDurable: opts.nonDurable ?? false,
          startMessageId:
            opts.startMessageId && (partitions === 0 || opts.startMessageId.partition === i)
              ? opts.startMessageId
              : undefined,
          receiverQueueSize,
          maxUnackedMessages: opts.maxUnackedMessages ?? 0,
          ackGroupTimeMs: opts.ackGroupTimeMs ?? 10,
          nackBackoff: { minDelayMs: 1000, maxDelayMs: 60_000, ...opts.nackBackoff },
          operationTimeoutMs: ctx.operationTimeoutMs,
          logger: ctx.logger,
          deliver: (msg) => consumer.push(msg),
          onError,
          onFatal: (err) => consumer.fail(err),
        }),
    );
    const results = await Promise.allSettled(consumer.parts.map((p) => p.start()));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) {
      await consumer.close();
      throw (failed as PromiseRejectedResult).reason;
    }
    return consumer;
  }

  /** Partitions (0 when the topic is not partitioned). */
  get partitions(): number {
    return this.partitionCount;
  }

  /** Failover: true while this consumer is the active one (of any partition). */
  get isActive(): boolean {
    return this.parts.some((p) => p.active);
  }

  /**
   * The next message; `undefined` after `timeoutMs` without one. Rejects with
   * ClosedError once the consumer is closed, or with the error that ended it.
   */
  async receive(timeoutMs?: number): Promise<Message | undefined> {
    const msg = await this.next(timeoutMs);
    if (msg === null) return undefined;
    if (msg === undefined)
      throw this.failure ?? new ClosedError(`consumer of ${this.subscription} is closed`);
    return msg;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Message> {
    for (;;) {
      const msg = await this.next(undefined);
      if (msg === undefined || msg === null) {
        if (this.failure) throw this.failure;
        return;
      }
      yield msg;
    }
  }

  /** Acknowledge one message (or id). */
  ack(msg: Message | string): void {
    const { part, id } = this.locate(msg);
    part.ack(id);
  }

  /** Acknowledge every message up to and including this one (exclusive and failover subscriptions). */
  ackCumulative(msg: Message | string): void {
    const { part, id } = this.locate(msg);
    part.ackCumulative(id);
  }

  /** Ask for redelivery after the nack backoff. */
  nack(msg: Message | string): void {
    const { part, id } = this.locate(msg);
    part.nack(id, typeof msg === 'string' ? 0 : msg.redeliveryCount);
  }

  /** Send pending acks, leave the subscription and end iteration. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.parts.map((p) => p.close()));
    this.queue.length = 0;
    this.queueHead = 0;
    for (const w of this.waiters.splice(0)) w(undefined);
  }

  private locate(msg: Message | string): { part: PartitionConsumer; id: MessageId } {
    const id =
      typeof msg === 'string' ? parseMessageId(msg) : (originOf(msg)?.messageId ?? parseMessageId(msg.id));
    const part = this.parts.length === 1 ? this.parts[0] : this.parts[id.partition];
    if (!part) {
      throw new InvalidArgumentError(
        `message id ${typeof msg === 'string' ? msg : msg.id} names no partition of ${this.topic}`,
      );
    }
    return { part, id };
  }

  private push(msg: ReceivedMessage): void {
    if (this.closed) return;
    const waiter = this.waiters.shift();
    if (waiter) waiter(msg);
    else this.queue.push(msg);
  }

  private fail(err: SluiceError): void {
    if (this.failure || this.closed) return;
    this.failure = err;
    this.logger.error({ err: err.message, topic: this.topic }, 'consumer failed');
    void this.close();
  }

  /** undefined: closed; null: timed out. Messages from a replaced stream are skipped. */
  private async next(timeoutMs: number | undefined): Promise<ReceivedMessage | undefined | null> {
    for (;;) {
      let msg: ReceivedMessage | undefined | null;
      if (this.queueHead < this.queue.length) {
        msg = this.queue[this.queueHead++];
        if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
          this.queue.splice(0, this.queueHead);
          this.queueHead = 0;
        }
      } else if (this.closed) {
        return undefined;
      } else {
        msg = await this.wait(timeoutMs);
      }
      if (msg === undefined || msg === null) return msg;
      const part = this.parts.length === 1 ? this.parts[0] : this.parts[msg[ORIGIN].partitionIndex];
      if (part?.taken(msg)) return msg;
    }
  }

  private wait(timeoutMs: number | undefined): Promise<ReceivedMessage | undefined | null> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter: Waiter = (msg) => {
        clearTimeout(timer);
        resolve(msg);
      };
      this.waiters.push(waiter);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          resolve(null);
        }, timeoutMs);
      }
    });
  }
}
