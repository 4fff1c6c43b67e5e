import type * as grpc from '@grpc/grpc-js';
import {
  ClosedError,
  errorFromCode,
  FailedPreconditionError,
  formatMessageId,
  fromGrpcError,
  InvalidArgumentError,
  type Logger,
  type MessageId,
  type SluiceError,
  TimeoutError,
  UnavailableError,
} from '@sluice/common';
import type {
  ConsumeRequest,
  ConsumeResponse__Output,
  Delivery__Output,
  InitialPosition__Output,
  Seek,
  Subscribed__Output,
  SubscriptionType__Output,
} from '@sluice/proto';
import { groupAcks } from './ack-grouping.js';
import { type IndexedBatch, indexBatch } from './batch-codec.js';
import type { ConnectionPool } from './connection-pool.js';
import { connectToOwner, endCall, type TopicLookup } from './lookup.js';
import { compareMessageIds, ORIGIN, type ReceivedMessage, toWireId } from './message.js';
import { QueuedBatch } from './queued-batch.js';
import { retryAfterOpen, retryOnOpen } from './reconnect-policy.js';
import { type RedeliveryBackoff, redeliveryDelay } from './redelivery-backoff.js';
import { UnackedTracker } from './unacked-tracker.js';

export interface PartitionConsumerOptions {
  topic: string;
  /** Partition index, or -1 for a non-partitioned topic. */
  partition: number;
  subscription: string;
  type: SubscriptionType__Output;
  consumerName: string;
  priority: number;
  initialPosition: InitialPosition__Output;
  nonDurable: boolean;
  startMessageId: MessageId | undefined;
  receiverQueueSize: number;
  /** Payload bytes the receiver queue may grow to while messages are small (0 = fixed at receiverQueueSize). */
  receiverQueueBytes: number;
  maxUnackedMessages: number;
  ackGroupTimeMs: number;
  nackBackoff: RedeliveryBackoff;
  /** Nack what the application holds unacknowledged longer than this (0 = never). */
  ackTimeoutMs: number;
  /** Messages arriving with at least this redelivery count go to `divert` (0 = none do). */
  maxRedeliverCount: number;
  operationTimeoutMs: number;
  logger: Logger;
  /** Index of this partition consumer in its consumer (messages carry it back for acks). */
  slot: number;
  /** Hands the messages of a received entry to the consumer's queue. */
  deliver: (batch: QueuedBatch) => void;
  /**
   * Takes a message redelivered too often (dead-letter policy); it never
   * reaches the queue, and its permit comes back once the returned promise settles.
   */
  divert: (msg: ReceivedMessage) => Promise<void>;
  /** A request failed while the stream lives on (bad ack, corrupt batch). */
  onError: (err: SluiceError) => void;
  /** The subscription cannot be re-established; the consumer is done. */
  onFatal: (err: SluiceError) => void;
}

/** Pending acks kept while disconnected; past this the oldest are dropped (they are redelivered). */
const MAX_PENDING_ACKS = 100_000;
/** Messages the ack timeout tracks per partition; past this the oldest are nacked early. */
const MAX_TRACKED_UNACKED = 100_000;

/** A growing receiver queue stays within this multiple of receiverQueueSize. */
const MAX_QUEUE_GROWTH = 32;

/** Where a seek moves the subscription. */
export type SeekTarget = { messageId: MessageId } | { publishTime: number };

/**
 * A Seek written on the current stream. The wire carries no seek id: the
 * broker answers each Seek, in order, with SeekDone or with an error, so
 * answers are matched to requests by position in `unansweredSeeks`.
 */
interface SeekRequest {
  target: SeekTarget;
  /** Settle the caller's promise; absent for the seek a reader repeats after resubscribing. */
  resolve: (() => void) | undefined;
  reject: ((err: SluiceError) => void) | undefined;
  timer: NodeJS.Timeout | undefined;
}

/**
 * Whether an error the broker sent while a seek awaits its answer answers
 * that seek. Acks and nacks written before the seek are answered first, and
 * the broker refuses ids it does not await with NOT_FOUND, which it never
 * answers a seek with (a seek fails with OUT_OF_RANGE, FAILED_PRECONDITION,
 * INVALID_ARGUMENT or an internal / storage error). Flows and the acks the
 * client sends are never refused otherwise (cumulative acks on shared
 * subscriptions are refused before they reach the wire).
 */
function answersSeek(err: SluiceError): boolean {
  return err.code !== 'NOT_FOUND';
}

type State = 'connecting' | 'ready' | 'closed' | 'failed';
type Call = grpc.ClientDuplexStream<ConsumeRequest, ConsumeResponse__Output>;

/**
 * The consumer of one topic (or one partition) of a subscription: one Consume
 * stream, permits granted as the application takes messages (the whole
 * receiver queue at first, then in halves), acks grouped every few ms. On a
 * stream failure it looks the topic up again and subscribes anew; messages
 * still queued from the old stream are dropped because the broker redelivers
 * everything unacknowledged.
 */
export class PartitionConsumer {
  private state: State = 'connecting';
  private call: Call | undefined;
  private generation = 0;
  private unflowed = 0;
  private acks: MessageId[] = [];
  private cumulative: MessageId | undefined;
  private nacks = new Map<number, MessageId[]>();
  private ackTimer: NodeJS.Timeout | undefined;
  private readonly abort = new AbortController();
  private lastDequeued: MessageId | undefined;
  /**
   * Readers: where to resubscribe when nothing was taken since the start or
   * the last seek. A message id is sent as the start (inclusive); a publish
   * time is sought again right after subscribing; undefined means the
   * initial position. Once the broker confirms a subscription it becomes the
   * position the broker resolved the start to (so a reconnect does not
   * resolve 'latest' again and skip what was published meanwhile); with a
   * broker that does not say, the first message delivered.
   */
  private resumeFrom: SeekTarget | undefined;
  private consumerName: string;
  /** Messages handed to the queue in this generation and not yet taken. */
  private queued = 0;
  /** Deliveries are decoded in arrival order, one after the other (decompression is asynchronous). */
  private inbound: Promise<void> = Promise.resolve();
  /** The seek whose answer is awaited: deliveries before it are dropped. */
  private seeking: SeekRequest | undefined;
  /** Seeks written on this stream and not answered yet, oldest first (including ones given up on). */
  private unansweredSeeks: SeekRequest[] = [];
  /** Messages the broker sent while a seek was in flight: dropped, their permits granted again. */
  private droppedWhileSeeking = 0;
  /** Entries dropped while seeking (bounded by the permits granted): redelivered if the seek fails. */
  private droppedEntries: MessageId[] = [];
  private readonly unacked: UnackedTracker | undefined;
  /** The broker takes whole-entry acks (`Ack.entry_ids`); older brokers do not. */
  private entryAcks = false;
  /** Receiver queue in messages: receiverQueueSize, or more while messages are small. */
  private window: number;
  /** Moving average of message payload sizes, for the window (0 = none seen yet). */
  private avgMessageBytes = 0;
  /** Permits to hold back from future grants after the window shrank. */
  private owed = 0;
  active = true;

  constructor(
    private readonly pool: ConnectionPool,
    private readonly lookup: TopicLookup,
    private readonly opts: PartitionConsumerOptions,
  ) {
    this.consumerName = opts.consumerName;
    this.resumeFrom = opts.startMessageId ? { messageId: opts.startMessageId } : undefined;
    this.window = opts.receiverQueueSize;
    this.unacked =
      opts.ackTimeoutMs > 0
        ? new UnackedTracker(opts.ackTimeoutMs, MAX_TRACKED_UNACKED, (ids) => this.onAckTimeout(ids))
        : undefined;
  }

  get topic(): string {
    return this.opts.topic;
  }

  /** Set once by the consumer that owns this part, before `start`. */
  setSlot(slot: number): void {
    this.opts.slot = slot;
  }

  get name(): string {
    return this.consumerName;
  }

  async start(): Promise<void> {
    await connectToOwner(this.lookup, this.opts.topic, (address) => this.openStream(address), {
      shouldRetry: retryOnOpen,
      deadlineMs: this.opts.operationTimeoutMs,
      signal: this.abort.signal,
    });
  }

  /** Messages of this stream generation are still wanted (older ones the broker sends again). */
  isCurrent(generation: number): boolean {
    return generation === this.generation;
  }

  /** The application took `msg` from the queue: count it toward the next permit grant. */
  taken(msg: ReceivedMessage): boolean {
    const origin = msg[ORIGIN];
    if (origin.generation !== this.generation) return false;
    this.queued--;
    this.lastDequeued = origin.messageId;
    this.unacked?.add(origin.messageId);
    this.grant(1);
    return true;
  }

  ack(id: MessageId): void {
    this.unacked?.remove(id);
    if (this.acks.length >= MAX_PENDING_ACKS) this.acks.shift();
    this.acks.push(id);
    this.armAckTimer();
  }

  ackCumulative(id: MessageId): void {
    if (this.opts.type === 'SUBSCRIPTION_TYPE_SHARED' || this.opts.type === 'SUBSCRIPTION_TYPE_KEY_SHARED') {
      throw new InvalidArgumentError(
        `cumulative acks are not allowed on shared and key_shared subscriptions ('${this.opts.subscription}'); acknowledge messages individually`,
      );
    }
    this.unacked?.removeUpTo(id);
    if (!this.cumulative || compareMessageIds(id, this.cumulative) > 0) this.cumulative = id;
    this.armAckTimer();
  }

  /** Ask for redelivery after the backoff for a message already redelivered `redeliveryCount` times. */
  nack(id: MessageId, redeliveryCount: number): void {
    this.unacked?.remove(id);
    this.nackAfter(id, redeliveryDelay(this.opts.nackBackoff, redeliveryCount));
  }

  /**
   * Move the subscription (or, for a reader, its position). Acks given so far
   * go out first; messages received before the broker confirms are dropped
   * and their permits granted again. Resolves on the broker's SeekDone for
   * this seek; rejects with the broker's answer to it, or after the
   * operation timeout (the broker may still move later; the consumer then
   * drops what it buffered from before, as on success).
   */
  seek(target: SeekTarget): Promise<void> {
    if (this.state === 'closed') return Promise.reject(new ClosedError('consumer is closed'));
    const call = this.call;
    if (!call || this.state !== 'ready') {
      return Promise.reject(
        new UnavailableError(
          `consumer of ${this.opts.topic} is reconnecting; seek again once it is connected`,
        ),
      );
    }
    if (this.seeking?.resolve) {
      return Promise.reject(
        new FailedPreconditionError(`a seek on ${this.opts.topic} is already in progress; await it first`),
      );
    }
    if (this.seeking) {
      // A reader's own repeat of its last seek after resubscribing: this one supersedes it, and its
      // answer, when it comes, moves the reader only before this seek's answer does.
      clearTimeout(this.seeking.timer);
      this.seeking = undefined;
    }
    this.flushAcks();
    return new Promise<void>((resolve, reject) => {
      this.writeSeek(call, { target, resolve, reject, timer: undefined });
    });
  }

  private writeSeek(call: Call, req: SeekRequest): void {
    req.timer = setTimeout(() => {
      if (this.seeking !== req) return;
      // Given up on: its answer, if it still comes, only moves the consumer.
      this.seeking = undefined;
      this.redeliverDropped();
      const err = new TimeoutError(
        `broker did not confirm the seek on ${this.opts.topic} within ${this.opts.operationTimeoutMs} ms; seek again`,
      );
      if (req.reject) req.reject(err);
      else this.opts.onError(err);
    }, this.opts.operationTimeoutMs);
    // Drops counted so far (a superseded seek's) stay counted: they are settled with this seek.
    this.seeking = req;
    this.unansweredSeeks.push(req);
    const target = req.target;
    const seek: Seek =
      'messageId' in target ? { messageId: toWireId(target.messageId) } : { publishTime: target.publishTime };
    call.write({ seek });
  }

  /** Send grouped acks now, then close the stream. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.flushAcks();
    this.state = 'closed';
    this.abort.abort();
    this.unacked?.close();
    this.failSeek(new ClosedError(`consumer of ${this.opts.topic} closed during a seek`));
    clearTimeout(this.ackTimer);
    const call = this.call;
    this.call = undefined;
    this.generation++;
    if (call) await endCall(call);
  }

  private nackAfter(id: MessageId, delay: number): void {
    const list = this.nacks.get(delay) ?? [];
    list.push(id);
    this.nacks.set(delay, list);
    this.armAckTimer();
  }

  private onAckTimeout(ids: MessageId[]): void {
    this.opts.logger.debug({ topic: this.opts.topic, count: ids.length }, 'ack timeout: redelivering');
    for (const id of ids) this.nackAfter(id, 0);
  }

  /** The stream is gone (or the consumer closed): no seek on it will be answered. */
  private failSeek(err: SluiceError): void {
    this.unansweredSeeks = [];
    const seek = this.seeking;
    if (!seek) return;
    this.seeking = undefined;
    clearTimeout(seek.timer);
    this.droppedWhileSeeking = 0;
    this.droppedEntries = [];
    if (seek.reject) seek.reject(err);
  }

  /**
   * The broker refused a seek: it did not move. Messages queued from before
   * stay valid; those dropped while waiting are asked for again.
   */
  private onSeekFailed(req: SeekRequest, err: SluiceError, call: Call): void {
    if (call !== this.call) return;
    clearTimeout(req.timer);
    if (this.seeking !== req) {
      this.opts.logger.debug({ topic: this.opts.topic, err: err.message }, 'a seek given up on failed');
      return;
    }
    this.seeking = undefined;
    this.redeliverDropped();
    if (req.reject) req.reject(err);
    else this.opts.onError(err);
  }

  /**
   * The broker moved to `req`'s target (SeekDone; it follows every delivery
   * sent before the move). Resolves `req` if it is the seek awaited; a seek
   * given up on moved the consumer all the same.
   */
  private onSeekDone(req: SeekRequest, call: Call): void {
    if (call !== this.call) return;
    clearTimeout(req.timer);
    const awaited = this.seeking === req;
    if (awaited) this.seeking = undefined;
    // Everything queued from before the seek is stale: drop it and let the broker send that many again.
    this.generation++;
    // While a later seek is awaited its drops stay counted; they are granted when it is answered.
    const dropped = this.seeking ? 0 : this.droppedWhileSeeking;
    const permits = this.queued + dropped + this.unflowed;
    this.queued = 0;
    this.unflowed = 0;
    if (!this.seeking) {
      this.droppedWhileSeeking = 0;
      this.droppedEntries = [];
    }
    this.unacked?.clear();
    this.nacks.clear();
    if (this.opts.nonDurable) {
      // A reader resuming after a reconnect must start from the new position, not the old one.
      this.lastDequeued = undefined;
      this.resumeFrom = req.target;
    }
    if (permits > 0 && this.state === 'ready') this.call?.write({ flow: { permits } });
    if (awaited) req.resolve?.();
  }

  /**
   * A seek failed or was given up on: the broker still counts the entries
   * dropped while waiting as delivered here, so ask for them again, and grant
   * their permits again.
   */
  private redeliverDropped(): void {
    const permits = this.droppedWhileSeeking;
    const entries = this.droppedEntries;
    this.droppedWhileSeeking = 0;
    this.droppedEntries = [];
    const call = this.call;
    if (!call || this.state !== 'ready') return;
    if (entries.length > 0) call.write({ nack: { messageIds: entries.map(toWireId), delayMs: 0 } });
    if (permits > 0) call.write({ flow: { permits } });
  }

  private grant(n: number): void {
    const held = Math.min(this.owed, n);
    this.owed -= held;
    this.unflowed += n - held;
    const threshold = Math.max(1, Math.floor(this.window / 2));
    if (this.unflowed >= threshold && this.state === 'ready') {
      this.call?.write({ flow: { permits: this.unflowed } });
      this.unflowed = 0;
    }
  }

  /**
   * Follow the receiver queue's byte budget: grow the window (granting the
   * difference at once) while messages are small, shrink it (by holding back
   * later grants) when they get larger. Changes under a quarter are ignored.
   * The window never drops below receiverQueueSize, so the permits the
   * broker holds never run out while grants are held back.
   */
  private resizeWindow(count: number, valueBytes: number): void {
    if (this.opts.receiverQueueBytes <= 0 || count === 0) return;
    const avg = Math.max(1, valueBytes / count);
    this.avgMessageBytes =
      this.avgMessageBytes === 0 ? avg : this.avgMessageBytes + 0.2 * (avg - this.avgMessageBytes);
    const base = this.opts.receiverQueueSize;
    const target = Math.min(
      base * MAX_QUEUE_GROWTH,
      Math.max(base, Math.floor(this.opts.receiverQueueBytes / this.avgMessageBytes)),
    );
    if (target > this.window * 1.25) {
      const extra = target - this.window;
      this.window = target;
      const held = Math.min(this.owed, extra);
      this.owed -= held;
      // Not ready: the next stream opens with the whole window.
      if (extra > held && this.state === 'ready') this.call?.write({ flow: { permits: extra - held } });
    } else if (target < this.window * 0.75) {
      this.owed += this.window - target;
      this.window = target;
    }
  }

  private armAckTimer(): void {
    if (this.ackTimer || this.state !== 'ready') return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = undefined;
      this.flushAcks();
    }, this.opts.ackGroupTimeMs);
  }

  private flushAcks(): void {
    const call = this.call;
    if (!call || this.state !== 'ready') return;
    if (this.acks.length > 0) {
      if (this.entryAcks) {
        const { entryIds, messageIds } = groupAcks(this.acks);
        call.write({ ack: { messageIds, entryIds, type: 'ACK_TYPE_UNSPECIFIED' } });
      } else {
        call.write({ ack: { messageIds: this.acks.map(toWireId), type: 'ACK_TYPE_UNSPECIFIED' } });
      }
      this.acks = [];
    }
    if (this.cumulative) {
      call.write({ ack: { messageIds: [toWireId(this.cumulative)], type: 'ACK_TYPE_CUMULATIVE' } });
      this.cumulative = undefined;
    }
    for (const [delayMs, ids] of this.nacks) call.write({ nack: { messageIds: ids.map(toWireId), delayMs } });
    this.nacks.clear();
  }

  private openStream(address: string): Promise<void> {
    if (this.abort.signal.aborted) return Promise.reject(new ClosedError('consumer closed'));
    const call = this.pool.get(address).consumer.Consume();
    return new Promise<void>((resolve, reject) => {
      let subscribed = false;
      const timer = setTimeout(() => {
        call.cancel();
        reject(
          new TimeoutError(
            `broker ${address} did not confirm the subscription on ${this.opts.topic} in time`,
          ),
        );
      }, this.opts.operationTimeoutMs);
      call.on('data', (res: ConsumeResponse__Output) => {
        if (!subscribed) {
          if (res.response === 'error' && res.error) {
            clearTimeout(timer);
            call.cancel();
            reject(errorFromCode(res.error.errorCode || 'INTERNAL', res.error.message));
            return;
          }
          if (res.response !== 'subscribed' || !res.subscribed) {
            clearTimeout(timer);
            call.cancel();
            reject(new UnavailableError(`broker ${address} answered Subscribe with '${res.response}'`));
            return;
          }
          subscribed = true;
          clearTimeout(timer);
          this.onSubscribed(call, res.subscribed);
          resolve();
          return;
        }
        if (call !== this.call) return;
        switch (res.response) {
          case 'deliveries': {
            for (const d of res.deliveries?.deliveries ?? []) {
              const indexed = indexBatch(d.batch ?? { header: null, payload: Buffer.alloc(0) });
              // Keep a rejected decode from surfacing as unhandled before its turn in the chain.
              indexed.catch(() => undefined);
              this.inbound = this.inbound.then(() => this.onDelivery(d, indexed, call));
            }
            break;
          }
          case 'seekDone': {
            // Applied in arrival order with the deliveries: those before it count as dropped.
            const req = this.unansweredSeeks.shift();
            if (req) this.inbound = this.inbound.then(() => this.onSeekDone(req, call));
            break;
          }
          case 'activeChange':
            this.active = res.activeChange?.isActive ?? this.active;
            break;
          case 'error':
            if (res.error) {
              const err = errorFromCode(res.error.errorCode || 'INTERNAL', res.error.message);
              // The broker answers a failed seek with an error on the stream; errors of acks
              // written before it arrive first and must not be taken for its answer.
              const req =
                this.unansweredSeeks.length > 0 && answersSeek(err)
                  ? this.unansweredSeeks.shift()
                  : undefined;
              // In arrival order with the deliveries, as SeekDone.
              if (req) this.inbound = this.inbound.then(() => this.onSeekFailed(req, err, call));
              else this.opts.onError(err);
            }
            break;
          default:
            break;
        }
      });
      const onDown = (err: SluiceError) => {
        clearTimeout(timer);
        if (!subscribed) reject(err);
        else if (call === this.call) this.onStreamDown(err);
      };
      call.on('error', (err) => onDown(fromGrpcError(err)));
      call.on('end', () => onDown(new UnavailableError(`broker ${address} ended the consume stream`)));
      const resume = this.resumeFrom;
      const start = this.opts.nonDurable
        ? (this.lastDequeued ?? (resume && 'messageId' in resume ? resume.messageId : undefined))
        : undefined;
      call.write({
        subscribe: {
          topic: this.opts.topic,
          subscription: this.opts.subscription,
          type: this.opts.type,
          consumerName: this.consumerName,
          priority: this.opts.priority,
          initialPosition: this.opts.initialPosition,
          nonDurable: this.opts.nonDurable,
          startMessageId: start ? toWireId(start) : null,
          maxUnackedMessages: this.opts.maxUnackedMessages,
        },
      });
    });
  }

  private onSubscribed(call: Call, subscribed: Subscribed__Output): void {
    if (this.abort.signal.aborted) {
      void endCall(call);
      return;
    }
    this.call = call;
    this.consumerName = subscribed.consumerName || this.consumerName;
    this.entryAcks = subscribed.acceptsEntryAcks === true;
    const start = subscribed.startMessageId;
    if (this.opts.nonDurable && !this.lastDequeued && this.resumeFrom === undefined && start) {
      // Where 'earliest' / 'latest' resolved: a reconnect resumes here, inclusive.
      this.resumeFrom = {
        messageId: this.messageIdOf({
          ledgerId: Number(start.ledgerId),
          entryId: Number(start.entryId),
          batchIndex: start.batchIndex,
        }),
      };
    }
    this.generation++;
    this.unflowed = 0;
    this.queued = 0;
    // The broker redelivers everything unacknowledged to the new stream; their timeouts start over.
    this.unacked?.clear();
    this.state = 'ready';
    this.owed = 0;
    this.unansweredSeeks = [];
    const resume = this.resumeFrom;
    if (this.opts.nonDurable && !this.lastDequeued && resume && 'publishTime' in resume) {
      // A reader that sought by time and has received nothing since: the broker resolves the time again.
      this.writeSeek(call, { target: resume, resolve: undefined, reject: undefined, timer: undefined });
    }
    call.write({ flow: { permits: this.window } });
    this.flushAcks();
  }

  private async onDelivery(
    d: Delivery__Output,
    indexed: ReturnType<typeof indexBatch>,
    call: Call,
  ): Promise<void> {
    if (call !== this.call || this.state === 'closed') return;
    if (this.seeking) {
      // Sent before the broker moved (SeekDone comes after every delivery from the old position).
      this.droppedWhileSeeking += liveCount(d);
      if (d.messageId) this.droppedEntries.push(this.messageIdOf(d.messageId));
      return;
    }
    const first = d.messageId;
    if (!first || !d.batch) return;
    // Only a new stream (or close) changes it while this waits: seeks are applied in this chain.
    const generation = this.generation;
    let batch: IndexedBatch;
    try {
      batch = await indexed;
    } catch (err) {
      if (generation !== this.generation) return;
      // Never hand out a batch we cannot read: it stays unacknowledged on the broker for a
      // consumer that can, and this one lives on.
      this.grant(liveCount(d));
      const e = fromGrpcError(err);
      const id = formatMessageId({ ...first, partition: this.opts.partition });
      e.message = `message(s) from ${id} on ${this.opts.topic} cannot be read: ${e.message}`;
      this.opts.onError(e);
      return;
    }
    if (generation !== this.generation) return;
    const count = batch.offsets.length;
    this.resizeWindow(count, batch.valueBytes);
    const acked = d.ackedIndexes.length > 0 ? new Set(d.ackedIndexes) : undefined;
    // A reader resuming after a reconnect skips what it already took.
    const from = this.opts.nonDurable ? this.firstAfterDequeued(first, count) : 0;
    const queued = new QueuedBatch(
      {
        topic: this.opts.topic,
        partition: this.opts.partition,
        slot: this.opts.slot,
        generation: this.generation,
        ledgerId: first.ledgerId,
        entryId: first.entryId,
        firstIndex: first.batchIndex,
        publishTime: d.publishTime,
        redeliveryCount: d.redeliveryCount,
        producerName: d.producerName,
      },
      batch.raw,
      batch.offsets,
      from,
      acked,
    );
    const live = queued.remaining;
    if (live < count) this.grant(count - live);
    if (live === 0) return;
    if (this.opts.nonDurable && !this.lastDequeued && !(this.resumeFrom && 'messageId' in this.resumeFrom)) {
      // The position the broker resolved ('latest', a publish time): resume here, inclusive.
      this.resumeFrom = { messageId: this.messageIdOf({ ...first, batchIndex: first.batchIndex + from }) };
    }
    if (this.opts.maxRedeliverCount > 0 && d.redeliveryCount >= this.opts.maxRedeliverCount) {
      for (let msg = queued.take(); msg; msg = queued.take()) {
        // The permit returns once the letter is stored, which bounds letters in flight by the queue size.
        void this.opts.divert(msg).finally(() => {
          if (generation === this.generation) this.grant(1);
        });
      }
      return;
    }
    this.queued += live;
    this.opts.deliver(queued);
  }

  private messageIdOf(id: { ledgerId: number; entryId: number; batchIndex: number }): MessageId {
    return {
      ledgerId: id.ledgerId,
      entryId: id.entryId,
      batchIndex: id.batchIndex,
      partition: this.opts.partition,
    };
  }

  /** Index of the first of `count` messages from `first` past the last one taken. */
  private firstAfterDequeued(first: MessageId, count: number): number {
    const last = this.lastDequeued;
    if (!last) return 0;
    const cmp = first.ledgerId - last.ledgerId || first.entryId - last.entryId;
    if (cmp !== 0) return cmp < 0 ? count : 0;
    return Math.min(count, Math.max(0, last.batchIndex - first.batchIndex + 1));
  }

  private onStreamDown(err: SluiceError): void {
    this.call = undefined;
    this.failSeek(
      new UnavailableError(`consume stream on ${this.opts.topic} was lost during a seek; seek again`),
    );
    if (this.state !== 'ready') return;
    this.state = 'connecting';
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.opts.logger.info({ topic: this.opts.topic, err: err.message }, 'consume stream lost; resubscribing');
    void connectToOwner(this.lookup, this.opts.topic, (address) => this.openStream(address), {
      shouldRetry: retryAfterOpen,
      signal: this.abort.signal,
    }).catch((e: unknown) => {
      if (this.state === 'closed') return;
      this.state = 'failed';
      this.opts.onFatal(fromGrpcError(e));
    });
  }
}

/** Messages of a delivery the broker counted against this consumer's permits. */
function liveCount(d: Delivery__Output): number {
  return Math.max(0, (d.batch?.header?.count ?? 0) - d.ackedIndexes.length);
}
