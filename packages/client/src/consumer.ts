import {
  ClosedError,
  formatMessageId,
  fromGrpcError,
  InvalidArgumentError,
  type Logger,
  type MessageId,
  parseMessageId,
  type SluiceError,
} from '@sluice/common';
import type { InitialPosition__Output, SubscriptionType__Output } from '@sluice/proto';
import type { ConnectionPool } from './connection-pool.js';
import {
  checkDeadLetterPolicy,
  DEFAULT_MAX_RECONSUME_TIMES,
  type DeadLetterPolicy,
  deadLetterTopicFor,
  LETTER_PROPERTIES,
  LetterBox,
  retryTopicFor,
} from './dead-letter.js';
import type { TopicLookup } from './lookup.js';
import { type Message, ORIGIN, originOf, type ReceivedMessage } from './message.js';
import { PartitionConsumer, type SeekTarget } from './partition-consumer.js';
import { Producer } from './producer.js';
import type { QueuedBatch } from './queued-batch.js';
import { checkBackoff, DEFAULT_NACK_BACKOFF, type RedeliveryBackoff } from './redelivery-backoff.js';
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
  /**
   * Messages buffered per partition ahead of the application. Given, the
   * queue is fixed at this size. Not given, it is 1000 and, on exclusive and
   * failover subscriptions, grows while messages are small (see
   * `receiverQueueBytes`).
   */
  receiverQueueSize?: number;
  /**
   * With no `receiverQueueSize` given, on exclusive and failover
   * subscriptions: let the receiver queue grow past 1000 messages (up to
   * 32,000) while messages are small, to about this many payload bytes per
   * partition (default 8 MiB; 0 = fixed at 1000). At high rates of small
   * messages 1000 are a few milliseconds of data, shorter than the permit
   * round trip, and a tailing consumer falls behind. Shared and key_shared
   * subscriptions keep a fixed queue, so that one consumer does not hold
   * messages the others could take.
   */
  receiverQueueBytes?: number;
  /** Shared subscriptions: unacknowledged messages the broker lets this consumer hold (0 = broker default). */
  maxUnackedMessages?: number;
  /** How long acks are grouped before they go on the wire (default 10 ms). */
  ackGroupTimeMs?: number;
  /**
   * Redelivery delay after a nack: minDelayMs * multiplier^redeliveryCount,
   * capped at maxDelayMs (default 1 s, doubling, up to 60 s).
   */
  nackRedeliveryBackoff?: Partial<RedeliveryBackoff>;
  /** Nack messages the application holds unacknowledged longer than this (ms; default 0 = never). */
  ackTimeoutMs?: number;
  /** Dead-letter (and retry) topics; see DeadLetterPolicy. */
  deadLetterPolicy?: DeadLetterPolicy;
  /** Also subscribe to the retry topic and allow `reconsumeLater` (default false). */
  enableRetry?: boolean;
  /** Called for request errors that leave the consumer running (e.g. a refused ack). */
  onError?: (err: SluiceError) => void;
}

/** Internal: readers are non-durable consumers that start at a given message. */
export interface ConsumerInternals {
  nonDurable?: boolean;
  startMessageId?: MessageId | undefined;
}

const DEFAULT_RECEIVER_QUEUE_BYTES = 8 * 1024 * 1024;

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

/** Where `Consumer.seek` moves the subscription. */
export type SeekPosition = string | Message | { publishTime: number | Date } | 'earliest' | 'latest';

type Context = { logger: Logger; operationTimeoutMs: number };

/**
 * A consumer of a subscription: `for await (const msg of consumer)`. On a
 * partitioned topic it subscribes to every partition and merges them; acks
 * find their partition by the message id.
 */
export class Consumer implements AsyncIterable<Message> {
  /** Received entries whose messages are not all taken yet, oldest first. */
  private readonly queue: QueuedBatch[] = [];
  private queueHead = 0;
  private waiters: Waiter[] = [];
  private closed = false;
  private failure: SluiceError | undefined;
  private parts: PartitionConsumer[] = [];
  /** The first `mainParts` parts consume `topic`; the rest its retry topic. */
  private mainParts = 0;
  private partitionCount = 0;
  private letters: LetterBox | undefined;
  /** Dead letters being stored; close waits for them so their originals get acknowledged. */
  private readonly diverting = new Set<Promise<void>>();
  private maxReconsumeTimes = DEFAULT_MAX_RECONSUME_TIMES;

  private constructor(
    readonly topic: string,
    readonly subscription: string,
    private readonly logger: Logger,
    private readonly operationTimeoutMs: number,
  ) {}

  static async create(
    pool: ConnectionPool,
    lookup: TopicLookup,
    opts: ConsumerOptions & ConsumerInternals,
    ctx: Context,
    createSubscription?: (topic: string, subscription: string) => Promise<void>,
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
    const queueBytes = opts.receiverQueueBytes ?? DEFAULT_RECEIVER_QUEUE_BYTES;
    if (!Number.isInteger(queueBytes) || queueBytes < 0) {
      throw new InvalidArgumentError('receiverQueueBytes must be an integer >= 0 (0 = a fixed queue)');
    }
    const singleActive = opts.type === undefined || opts.type === 'exclusive' || opts.type === 'failover';
    const receiverQueueBytes = opts.receiverQueueSize === undefined && singleActive ? queueBytes : 0;
    const nackBackoff = checkBackoff({ ...DEFAULT_NACK_BACKOFF, ...opts.nackRedeliveryBackoff });
    const ackTimeoutMs = opts.ackTimeoutMs ?? 0;
    if (!(Number.isFinite(ackTimeoutMs) && ackTimeoutMs >= 0)) {
      throw new InvalidArgumentError(`ackTimeoutMs ${ackTimeoutMs} is invalid; use 0 (off) or more`);
    }
    checkDeadLetterPolicy(opts.deadLetterPolicy);
    const topic = fullTopicName(opts.topic);
    const consumer = new Consumer(topic, opts.subscription, ctx.logger, ctx.operationTimeoutMs);
    const policy = opts.deadLetterPolicy;
    const retryTopic = opts.enableRetry ? fullTopicName(retryTopicFor(topic, opts.subscription, policy)) : '';
    if (policy || opts.enableRetry) {
      consumer.maxReconsumeTimes = policy?.maxRedeliverCount ?? DEFAULT_MAX_RECONSUME_TIMES;
      consumer.letters = new LetterBox({
        deadLetterTopic: fullTopicName(deadLetterTopicFor(topic, opts.subscription, policy)),
        retryTopic,
        initialSubscriptionName: policy?.initialSubscriptionName,
        // A letter not stored within the operation timeout fails; its original is nacked and tried again later.
        createProducer: (t) =>
          Producer.create(
            pool,
            lookup,
            { topic: t, batching: { maxDelayMs: 1 }, sendTimeoutMs: ctx.operationTimeoutMs },
            ctx,
          ),
        createSubscription:
          createSubscription ??
          (() => Promise.reject(new InvalidArgumentError('initialSubscriptionName needs the client admin'))),
        logger: ctx.logger,
      });
    }
    const onError =
      opts.onError ??
      ((err: SluiceError) => ctx.logger.warn({ err: err.message, topic }, 'consumer request failed'));
    const partsOf = async (name: string, withStart: boolean): Promise<PartitionConsumer[]> => {
      const partitions = await lookup.partitions(name);
      if (name === topic) consumer.partitionCount = partitions;
      const names =
        partitions > 0 ? Array.from({ length: partitions }, (_, i) => partitionTopicName(name, i)) : [name];
      return names.map(
        (partName, i) =>
          new PartitionConsumer(pool, lookup, {
            topic: partName,
            partition: partitions > 0 ? i : -1,
            subscription: opts.subscription,
            type,
            consumerName: opts.consumerName ?? '',
            priority: opts.priority ?? 0,
            initialPosition,
            nonDurable: opts.nonDurable ?? false,
            startMessageId:
              withStart && opts.startMessageId && (partitions === 0 || opts.startMessageId.partition === i)
                ? opts.startMessageId
                : undefined,
            receiverQueueSize,
            receiverQueueBytes,
            maxUnackedMessages: opts.maxUnackedMessages ?? 0,
            ackGroupTimeMs: opts.ackGroupTimeMs ?? 10,
            nackBackoff,
            ackTimeoutMs,
            maxRedeliverCount: policy?.maxRedeliverCount ?? 0,
            operationTimeoutMs: ctx.operationTimeoutMs,
            logger: ctx.logger,
            slot: 0,
            deliver: (batch) => consumer.push(batch),
            divert: (msg) => consumer.divert(msg),
            onError,
            onFatal: (err) => consumer.fail(err),
          }),
      );
    };
    try {
      const main = await partsOf(topic, true);
      const retry = retryTopic ? await partsOf(retryTopic, false) : [];
      consumer.parts = [...main, ...retry];
      consumer.mainParts = main.length;
      consumer.parts.forEach((p, slot) => {
        p.setSlot(slot);
      });
    } catch (err) {
      await consumer.letters?.close();
      throw err;
    }
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

  /**
   * Up to `maxMessages` messages: waits up to `timeoutMs` for the first one,
   * then takes what is already queued, without waiting for more (as Kafka's
   * `poll`). An empty array after the timeout. Rejects like `receive`. One
   * promise per batch instead of one per message, for consumers that keep up
   * with a high rate.
   */
  async receiveBatch(maxMessages: number, timeoutMs?: number): Promise<Message[]> {
    if (!Number.isSafeInteger(maxMessages) || maxMessages < 1) {
      throw new InvalidArgumentError(`maxMessages ${maxMessages} must be a positive integer`);
    }
    const first = await this.next(timeoutMs);
    if (first === null) return [];
    if (first === undefined)
      throw this.failure ?? new ClosedError(`consumer of ${this.subscription} is closed`);
    const out: Message[] = [first];
    while (out.length < maxMessages) {
      const msg = this.takeQueued();
      if (msg === undefined) break;
      out.push(msg);
    }
    return out;
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

  /** Messages received and waiting in the receiver queue. */
  get queuedMessages(): number {
    let n = 0;
    for (let i = this.queueHead; i < this.queue.length; i++) {
      const batch = this.queue[i]!;
      if (this.parts[batch.origin.slot]?.isCurrent(batch.origin.generation)) n += batch.remaining;
    }
    return n;
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

  /** Ask for redelivery after the nack backoff (which grows with the message's redelivery count). */
  nack(msg: Message | string): void {
    const { part, id } = this.locate(msg);
    part.nack(id, typeof msg === 'string' ? 0 : msg.redeliveryCount);
  }

  /**
   * Process `msg` again after `delayMs`: it is published to the retry topic
   * (delivered after the delay, with a RECONSUMETIMES property counting the
   * retries) and acknowledged here. Past the dead-letter policy's
   * maxRedeliverCount retries it goes to the dead-letter topic instead.
   * Needs `enableRetry`; delayed delivery needs a shared or key_shared subscription.
   */
  async reconsumeLater(msg: Message, delayMs: number): Promise<void> {
    const letters = this.letters;
    if (!letters || this.parts.length === this.mainParts) {
      throw new InvalidArgumentError('reconsumeLater needs a consumer subscribed with enableRetry: true');
    }
    if (!(Number.isFinite(delayMs) && delayMs >= 0)) {
      throw new InvalidArgumentError(`reconsumeLater delay ${delayMs} ms is invalid; use 0 or more`);
    }
    const { part, id } = this.locate(msg);
    const times = Number(msg.properties[LETTER_PROPERTIES.reconsumeTimes] ?? 0) + 1;
    if (times > this.maxReconsumeTimes) await letters.deadLetter(msg);
    else await letters.retry(msg, Math.round(delayMs), times);
    part.ack(id);
  }

  /**
   * Move the subscription: to a message id (that partition only on a
   * partitioned topic), to the first message published at or after a time,
   * or to the earliest / latest message (every partition). Messages received
   * before the move are dropped from the local queue.
   */
  async seek(position: SeekPosition): Promise<void> {
    if (this.closed) throw new ClosedError(`consumer of ${this.subscription} is closed`);
    const main = this.parts.slice(0, this.mainParts);
    let target: SeekTarget;
    let parts = main;
    if (position === 'earliest' || position === 'latest') {
      target = { publishTime: position === 'earliest' ? 0 : Number.MAX_SAFE_INTEGER };
    } else if (typeof position === 'object' && 'publishTime' in position) {
      const t = position.publishTime instanceof Date ? position.publishTime.getTime() : position.publishTime;
      if (!Number.isFinite(t)) throw new InvalidArgumentError(`seek publishTime ${String(t)} is not a time`);
      target = { publishTime: t };
    } else {
      const { part, id } = this.locate(position);
      if (this.partitionCount > 0 && id.partition < 0) {
        throw new InvalidArgumentError(
          `message id ${formatMessageId(id)} names no partition of the partitioned topic ${this.topic}; use ledger:entry:index:partition`,
        );
      }
      target = { messageId: id };
      parts = [part];
    }
    await Promise.all(parts.map((p) => p.seek(target)));
  }

  /** Send pending acks, leave the subscription and end iteration. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.awaitDiverting();
    await Promise.all(this.parts.map((p) => p.close()));
    await this.letters?.close();
    this.queue.length = 0;
    this.queueHead = 0;
    for (const w of this.waiters.splice(0)) w(undefined);
  }

  /**
   * Let dead letters being stored finish, so their originals get acknowledged,
   * for at most the operation timeout: a letter stuck on an unreachable
   * dead-letter topic must not hold close() forever (its original stays
   * unacknowledged and is delivered again).
   */
  private async awaitDiverting(): Promise<void> {
    if (this.diverting.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.operationTimeoutMs);
    });
    await Promise.race([Promise.allSettled([...this.diverting]), timeout]).finally(() => clearTimeout(timer));
    if (this.diverting.size > 0) {
      this.logger.warn(
        { topic: this.topic, letters: this.diverting.size },
        'dead letters not stored in time; their messages will be delivered again',
      );
    }
  }

  private locate(msg: Message | string): { part: PartitionConsumer; id: MessageId } {
    const origin = typeof msg === 'string' ? undefined : originOf(msg);
    const id = origin?.messageId ?? parseMessageId(typeof msg === 'string' ? msg : msg.id);
    // Bare ids address the main topic: its only part, or the partition they name.
    const part = origin
      ? this.parts[origin.slot]
      : this.mainParts === 1
        ? this.parts[0]
        : id.partition >= 0 && id.partition < this.mainParts
          ? this.parts[id.partition]
          : undefined;
    if (!part) {
      throw new InvalidArgumentError(
        `message id ${typeof msg === 'string' ? msg : msg.id} names no partition of ${this.topic}`,
      );
    }
    return { part, id };
  }

  private push(batch: QueuedBatch): void {
    if (this.closed) return;
    // Waiters wait only on an empty queue: the entry's first messages are theirs.
    while (this.waiters.length > 0) {
      const msg = batch.take();
      if (msg === undefined) return;
      this.waiters.shift()?.(msg);
    }
    this.queue.push(batch);
  }

  /** A message redelivered too often: store it as a dead letter, then acknowledge it. */
  private divert(msg: ReceivedMessage): Promise<void> {
    const work = this.storeDeadLetter(msg).finally(() => this.diverting.delete(work));
    this.diverting.add(work);
    return work;
  }

  private async storeDeadLetter(msg: ReceivedMessage): Promise<void> {
    const part = this.parts[msg[ORIGIN].slot]!;
    const id = msg[ORIGIN].messageId;
    try {
      await this.letters!.deadLetter(msg);
      part.ack(id);
      this.logger.debug({ id: msg.id, topic: msg.topic }, 'message dead-lettered');
    } catch (err) {
      // Not stored: leave it to the broker to deliver again, and to us to try again then.
      part.nack(id, msg.redeliveryCount);
      const e = fromGrpcError(err);
      this.logger.warn(
        { id: msg.id, err: e.message },
        'dead-letter publish failed; message will be redelivered',
      );
    }
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
      const queued = this.takeQueued();
      if (queued) return queued;
      if (this.closed) return undefined;
      const msg = await this.wait(timeoutMs);
      if (msg === undefined || msg === null) return msg;
      const part = this.parts[msg[ORIGIN].slot];
      if (part?.taken(msg)) return msg;
    }
  }

  /** The next queued message, without waiting; undefined when none is queued. */
  private takeQueued(): ReceivedMessage | undefined {
    while (this.queueHead < this.queue.length) {
      const batch = this.queue[this.queueHead]!;
      const part = this.parts[batch.origin.slot];
      // Entries from a replaced stream are skipped whole: the broker sends their messages again.
      const msg = part?.isCurrent(batch.origin.generation) ? batch.take() : undefined;
      if (msg !== undefined && part?.taken(msg)) return msg;
      this.queueHead++;
      if (this.queueHead > 64 && this.queueHead * 2 > this.queue.length) {
        this.queue.splice(0, this.queueHead);
        this.queueHead = 0;
      }
    }
    return undefined;
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
