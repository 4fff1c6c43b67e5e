import type * as grpc from '@grpc/grpc-js';
import {
  ClosedError,
  errorFromCode,
  fromGrpcError,
  InvalidArgumentError,
  type Logger,
  type SluiceError,
  TimeoutError,
  UnavailableError,
} from '@sluice/common';
import type { MessageId__Output, ProduceResponse__Output, SendReceipt__Output } from '@sluice/proto';
import type { BatchEntry } from './batch-codec.js';
import { entrySize } from './batch-codec.js';
import { BatchOutcome, batchReceipt, messageIdAt, type SendCallback } from './batch-outcome.js';
import type { CompressionType } from './compression.js';
import type { ConnectionPool } from './connection-pool.js';
import { connectToOwner, endCall, type TopicLookup } from './lookup.js';
import { encodeSendRequest, type OutgoingProduceRequest } from './produce-codec.js';
import { retryAfterOpen, retryOnOpen } from './reconnect-policy.js';

export interface BatchingOptions {
  /** Messages per batch (default 1000). */
  maxMessages: number;
  /** Longest a message waits for its batch to fill (default 10 ms; 0 = at the end of the current event-loop turn). */
  maxDelayMs: number;
  /** Bytes per batch before compression (default 128 KiB; capped by the broker's max message size). */
  maxBytes: number;
  /** One key per batch (key_shared consumers need it): batches group messages by key. */
  keyBased: boolean;
}

export interface PartitionProducerOptions {
  topic: string;
  /** Partition index, or -1 for a non-partitioned topic. */
  partition: number;
  producerName: string;
  accessMode: 'shared' | 'exclusive' | 'wait_for_exclusive';
  batching: BatchingOptions;
  compression: CompressionType;
  maxPendingMessages: number;
  /** Sends not acknowledged within this many ms are rejected with a TimeoutError (0 = never). */
  sendTimeoutMs: number;
  operationTimeoutMs: number;
  logger: Logger;
}

interface OpenBatch {
  entries: BatchEntry[];
  bytes: number;
  deliverAt: number;
  /** Send time of its first (oldest) message. */
  since: number;
  /** Settles every message of the batch at once. */
  outcome: BatchOutcome;
}

interface InflightBatch {
  firstSequenceId: number;
  count: number;
  /** Send time of its first (oldest) message. */
  since: number;
  outcome: BatchOutcome;
  /** The serialized ProduceRequest; undefined while the batch is being encoded. */
  wire: Buffer | undefined;
  /** Its messages were resolved or rejected. */
  done: boolean;
}

/** A send waiting for room in the pending queue; placed into a batch, in order, once there is. */
interface RoomWaiter {
  entry: BatchEntry;
  deliverAt: number;
  cb: SendCallback;
  /** Its callback was called (a flush waits for this). */
  done: boolean;
}

const ignore = (): void => undefined;

const ACCESS_MODES = {
  shared: 'PRODUCER_ACCESS_MODE_UNSPECIFIED',
  exclusive: 'PRODUCER_ACCESS_MODE_EXCLUSIVE',
  wait_for_exclusive: 'PRODUCER_ACCESS_MODE_WAIT_FOR_EXCLUSIVE',
} as const;

/** Room kept in a batch for the broker's envelope and proto framing. */
const BATCH_OVERHEAD_BYTES = 1024;

type State = 'connecting' | 'ready' | 'closed' | 'failed';

/**
 * The producer of one topic (or one partition): batches messages, numbers
 * them with sequence ids, and keeps every batch until its receipt arrives.
 * On any stream failure it looks the topic up again, reopens under the same
 * producer name and resends every unacknowledged batch with its original
 * sequence ids; the broker deduplicates what it had already stored.
 */
export class PartitionProducer {
  private state: State = 'connecting';
  private call: grpc.ClientDuplexStream<OutgoingProduceRequest, ProduceResponse__Output> | undefined;
  private readonly open = new Map<string, OpenBatch>();
  private openMessages = 0;
  private readonly inflight: InflightBatch[] = [];
  private pendingMessages = 0;
  /** Sends waiting for room, oldest first from `waiterHead` (bounded by the application's own sends in flight). */
  private roomWaiters: (RoomWaiter | undefined)[] = [];
  private waiterHead = 0;
  /** Waiters are being placed (placing may release slots and wake them again). */
  private waking = false;
  /** Flushes waiting for sends that wait for room: those sends go out as soon as they are placed. */
  private flushing = 0;
  /** Fires when the oldest pending send reaches the send timeout. */
  private sendTimer: NodeJS.Timeout | undefined;
  /** Sends past the send timeout are being rejected (the timer is set again afterwards). */
  private expiring = false;
  /** Flushes the open batches: a timer, or an immediate when `maxDelayMs` is 0. */
  private batchTimer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  private nextSequenceId = 0;
  private maxMessageSize = 5 * 1024 * 1024;
  private producerName: string;
  private failure: SluiceError | undefined;
  private readonly abort = new AbortController();
  private encoding: Promise<void> = Promise.resolve();

  constructor(
    private readonly pool: ConnectionPool,
    private readonly lookup: TopicLookup,
    private readonly opts: PartitionProducerOptions,
  ) {
    this.producerName = opts.producerName;
  }

  get name(): string {
    return this.producerName;
  }

  get topic(): string {
    return this.opts.topic;
  }

  private get waitsForExclusive(): boolean {
    return this.opts.accessMode === 'wait_for_exclusive';
  }

  /** Messages accepted by `send` and not yet acknowledged or refused. */
  get pending(): number {
    return this.pendingMessages;
  }

  /** First open: fails fast on errors that retrying cannot fix. */
  async start(): Promise<void> {
    await connectToOwner(this.lookup, this.opts.topic, (address) => this.openStream(address), {
      shouldRetry: retryOnOpen,
      // Waiting for exclusivity has no deadline: the broker answers once the other producers are gone.
      ...(this.waitsForExclusive ? {} : { deadlineMs: this.opts.operationTimeoutMs }),
      signal: this.abort.signal,
    });
  }

  /**
   * Whether a send may take a slot of the pending queue now. Never while
   * sends wait for room: they go first, so messages are stored in send order.
   */
  private hasRoom(): boolean {
    return (
      this.waiterHead === this.roomWaiters.length &&
      (this.pendingMessages < this.opts.maxPendingMessages ||
        this.state === 'closed' ||
        this.failure !== undefined)
    );
  }

  /** Queue one message; resolves to its message id once stored. Waits while the pending queue is full. */
  send(entry: BatchEntry, deliverAt: number): Promise<string> {
    if (!this.hasRoom()) {
      return new Promise((resolve, reject) =>
        this.waitForRoom(entry, deliverAt, (err, id) => (err ? reject(err) : resolve(id!))),
      );
    }
    this.pendingMessages++;
    const placed = this.place(entry, deliverAt);
    if (placed instanceof Error) return Promise.reject(placed);
    return placed.outcome.promise.then(messageIdAt(placed.index));
  }

  /** `send` with a callback instead of a promise per message. */
  sendWithCallback(entry: BatchEntry, deliverAt: number, cb: SendCallback): void {
    if (!this.hasRoom()) {
      this.waitForRoom(entry, deliverAt, cb);
      return;
    }
    this.pendingMessages++;
    this.placeWithCallback(entry, deliverAt, cb);
  }

  /** Put a message that holds a slot into its batch; `cb` is called once it settles, never synchronously. */
  private placeWithCallback(entry: BatchEntry, deliverAt: number, cb: SendCallback): void {
    const placed = this.place(entry, deliverAt);
    if (placed instanceof Error) queueMicrotask(() => cb(placed, undefined));
    else placed.outcome.onSettle(placed.index, cb);
  }

  private waitForRoom(entry: BatchEntry, deliverAt: number, cb: SendCallback): void {
    const waiter: RoomWaiter = {
      entry,
      deliverAt,
      done: false,
      cb: (err, id) => {
        waiter.done = true;
        cb(err, id);
      },
    };
    this.roomWaiters.push(waiter);
    this.armSendTimer(entry.sendTime);
  }

  /** Put one message into its open batch (sending the batch when full); an error gives its slot back. */
  private place(
    entry: BatchEntry,
    deliverAt: number,
  ): { outcome: BatchOutcome; index: number } | SluiceError {
    if (this.failure || this.state === 'closed') {
      this.release(1);
      return this.failure ?? new ClosedError(`producer ${this.producerName} on ${this.opts.topic} is closed`);
    }
    const size = entrySize(entry);
    const limit = this.maxMessageSize - BATCH_OVERHEAD_BYTES;
    if (size > limit) {
      this.release(1);
      return new InvalidArgumentError(
        `message of ${size} bytes exceeds the max message size of ${limit} bytes on ${this.opts.topic}; ` +
          'split it or raise the namespace max message size',
      );
    }
    const batchKey = deliverAt > 0 ? `@${deliverAt}` : this.opts.batching.keyBased ? `k:${entry.key}` : '';
    let batch = this.open.get(batchKey);
    const maxBytes = Math.min(this.opts.batching.maxBytes, limit);
    if (batch && batch.bytes + size > maxBytes) {
      this.flushBatch(batchKey);
      batch = undefined;
    }
    if (!batch) {
      batch = { entries: [], bytes: 0, deliverAt, since: entry.sendTime, outcome: new BatchOutcome() };
      this.open.set(batchKey, batch);
      this.armSendTimer(entry.sendTime);
    }
    const placed = { outcome: batch.outcome, index: batch.entries.length };
    batch.entries.push(entry);
    batch.bytes += size;
    this.openMessages++;
    // Delayed messages travel in batches of their own: deliver_at applies to a whole batch.
    if (deliverAt > 0 || batch.entries.length >= this.opts.batching.maxMessages) this.flushBatch(batchKey);
    else this.armBatchTimer();
    return placed;
  }

  /**
   * Send every open batch now and wait for all pending messages to be
   * acknowledged or refused, including sends still waiting for room.
   */
  async flush(): Promise<void> {
    const last = this.waiterHead < this.roomWaiters.length ? this.roomWaiters.at(-1) : undefined;
    this.flushing++;
    try {
      for (;;) {
        this.flushAll();
        const batches = this.inflight.map((b) => b.outcome.promise.then(ignore, ignore));
        if (!last || last.done) {
          await Promise.all(batches);
          return;
        }
        if (batches.length > 0) await Promise.all(batches);
        // Nothing in flight while the last waiter's callback is still due: let it run.
        else await new Promise<void>((resolve) => setImmediate(resolve));
        if (last.done) return;
      }
    } finally {
      this.flushing--;
    }
  }

  /** Flush, wait for receipts (bounded by the operation timeout), then close the stream. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    if (!this.failure) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.opts.operationTimeoutMs);
      });
      await Promise.race([this.flush(), timeout]).finally(() => clearTimeout(timer));
    }
    this.state = 'closed';
    this.abort.abort();
    this.clearBatchTimer();
    clearTimeout(this.sendTimer);
    this.sendTimer = undefined;
    this.failAll(
      new ClosedError(
        `producer ${this.producerName} on ${this.opts.topic} was closed before the broker acknowledged`,
      ),
    );
    const call = this.call;
    this.call = undefined;
    if (call) await endCall(call);
    this.wakeRoomWaiters();
  }

  private armBatchTimer(): void {
    if (this.batchTimer) return;
    const fire = () => {
      this.batchTimer = undefined;
      this.flushAll();
    };
    // 0 sends what this event-loop turn queued as one batch, at the turn's
    // end (a 0 ms timer would wait about a millisecond).
    this.batchTimer =
      this.opts.batching.maxDelayMs > 0
        ? setTimeout(fire, this.opts.batching.maxDelayMs)
        : setImmediate(fire);
  }

  private clearBatchTimer(): void {
    const timer = this.batchTimer;
    this.batchTimer = undefined;
    if (timer === undefined) return;
    if (this.opts.batching.maxDelayMs > 0) clearTimeout(timer as NodeJS.Timeout);
    else clearImmediate(timer as NodeJS.Immediate);
  }

  private flushAll(): void {
    this.clearBatchTimer();
    for (const key of [...this.open.keys()]) this.flushBatch(key);
  }

  private flushBatch(key: string): void {
    const batch = this.open.get(key);
    if (!batch) return;
    this.open.delete(key);
    const entries = batch.entries;
    this.openMessages -= entries.length;
    if (this.openMessages === 0) this.clearBatchTimer();
    const firstSequenceId = this.nextSequenceId;
    this.nextSequenceId += entries.length;
    const inflight: InflightBatch = {
      firstSequenceId,
      count: entries.length,
      since: batch.since,
      outcome: batch.outcome,
      wire: undefined,
      done: false,
    };
    this.inflight.push(inflight);
    // Compression runs off the event loop; chaining keeps batches on the wire in sequence order.
    this.encoding = this.encoding.then(async () => {
      try {
        inflight.wire = await encodeSendRequest(entries, {
          firstSequenceId,
          compression: this.opts.compression,
          deliverAt: batch.deliverAt,
        });
        // The encoded request holds copies of the values: the messages are no longer needed.
        entries.length = 0;
      } catch (err) {
        if (inflight.done) return;
        const index = this.inflight.indexOf(inflight);
        if (index >= 0) this.inflight.splice(index, 1);
        this.settleBatch(inflight, fromGrpcError(err));
        return;
      }
      if (!inflight.done && this.state === 'ready') this.write(inflight);
    });
  }

  private write(batch: InflightBatch): void {
    if (batch.wire) this.call?.write(batch.wire);
  }

  /** Resolve (message i with the receipt's first id + i) or reject every message of a batch, once. */
  private settleBatch(batch: InflightBatch, outcome: SluiceError | MessageId__Output | null): void {
    if (batch.done) return;
    batch.done = true;
    if (outcome instanceof Error) batch.outcome.reject(outcome);
    else {
      batch.outcome.resolve(
        outcome
          ? batchReceipt(outcome.ledgerId, outcome.entryId, outcome.batchIndex, this.opts.partition)
          : batchReceipt(-1, -1, 0, this.opts.partition),
      );
    }
    batch.wire = undefined;
    this.release(batch.count);
  }

  /** Open a Produce stream on `address` and resolve once the broker confirms the producer. */
  private openStream(address: string): Promise<void> {
    if (this.abort.signal.aborted) return Promise.reject(new ClosedError('producer closed'));
    const conn = this.pool.get(address);
    const call = conn.producer.Produce();
    return new Promise<void>((resolve, reject) => {
      let opened = false;
      const timer = this.waitsForExclusive
        ? undefined
        : setTimeout(() => {
            call.cancel();
            reject(new TimeoutError(`broker ${address} did not open producer on ${this.opts.topic} in time`));
          }, this.opts.operationTimeoutMs);
      call.on('data', (res: ProduceResponse__Output) => {
        if (!opened) {
          if (res.response !== 'opened' || !res.opened) {
            clearTimeout(timer);
            call.cancel();
            reject(new UnavailableError(`broker ${address} answered OpenProducer with '${res.response}'`));
            return;
          }
          opened = true;
          clearTimeout(timer);
          this.onOpened(call, res.opened.producerName, res.opened.lastSequenceId, res.opened.maxMessageSize);
          resolve();
          return;
        }
        if (call !== this.call) return;
        if (res.response === 'receipt' && res.receipt) this.onReceipt(res.receipt);
        else if (res.response === 'error' && res.error) {
          const err = errorFromCode(res.error.errorCode || 'INTERNAL', res.error.message);
          this.onSendError(res.error.sequenceId, err);
        }
      });
      const onDown = (err: SluiceError) => {
        clearTimeout(timer);
        if (!opened) {
          reject(err);
          return;
        }
        if (call === this.call) this.onStreamDown(err);
      };
      call.on('error', (err) => onDown(fromGrpcError(err)));
      call.on('end', () => onDown(new UnavailableError(`broker ${address} ended the produce stream`)));
      call.write({
        open: {
          topic: this.opts.topic,
          producerName: this.producerName,
          accessMode: ACCESS_MODES[this.opts.accessMode],
        },
      });
    });
  }

  private onOpened(
    call: grpc.ClientDuplexStream<OutgoingProduceRequest, ProduceResponse__Output>,
    name: string,
    lastSequenceId: number,
    maxMessageSize: number,
  ): void {
    if (this.abort.signal.aborted) {
      void endCall(call);
      return;
    }
    this.call = call;
    this.producerName = name || this.producerName;
    if (maxMessageSize > 0) this.maxMessageSize = maxMessageSize;
    // A producer resuming under a known name continues above what the topic already holds;
    // resent batches keep their numbers so the broker can recognise the ones it stored.
    this.nextSequenceId = Math.max(this.nextSequenceId, lastSequenceId + 1);
    this.state = 'ready';
    for (const b of this.inflight) this.write(b);
  }

  private onReceipt(receipt: SendReceipt__Output): void {
    const head = this.inflight[0];
    if (!head || receipt.sequenceId < head.firstSequenceId) return; // late answer to a resent batch
    const index = this.inflight.findIndex((b) => b.firstSequenceId === receipt.sequenceId);
    if (index < 0) {
      this.opts.logger.warn({ sequenceId: receipt.sequenceId }, 'receipt for an unknown batch');
      return;
    }
    const [batch] = this.inflight.splice(index, 1);
    this.settleBatch(batch!, receipt.messageId);
  }

  private onSendError(sequenceId: number, err: SluiceError): void {
    if (retryAfterOpen(err) && err.retriable) {
      // The broker lost the topic under us: resend everything from a fresh stream.
      this.call?.cancel();
      this.onStreamDown(err);
      return;
    }
    const index = this.inflight.findIndex((b) => b.firstSequenceId === sequenceId);
    if (index < 0) return;
    const [batch] = this.inflight.splice(index, 1);
    this.settleBatch(batch!, err);
  }

  private onStreamDown(err: SluiceError): void {
    this.call = undefined;
    if (this.state !== 'ready') return;
    this.state = 'connecting';
    this.opts.logger.info({ topic: this.opts.topic, err: err.message }, 'produce stream lost; reconnecting');
    void connectToOwner(this.lookup, this.opts.topic, (address) => this.openStream(address), {
      shouldRetry: retryAfterOpen,
      signal: this.abort.signal,
      onRetry: (e, n, delay) =>
        this.opts.logger.debug({ err: e.message, attempt: n, delay }, 'producer reconnect'),
    }).catch((e: unknown) => {
      if (this.state === 'closed') return;
      this.state = 'failed';
      this.failure = fromGrpcError(e);
      this.failAll(this.failure);
    });
  }

  private failAll(err: SluiceError): void {
    let failed = 0;
    for (const batch of this.open.values()) {
      batch.outcome.reject(err);
      failed += batch.entries.length;
    }
    this.open.clear();
    this.openMessages = 0;
    this.release(failed);
    for (const batch of this.inflight.splice(0)) this.settleBatch(batch, err);
  }

  private release(count: number): void {
    this.pendingMessages -= count;
    if (this.waiterHead < this.roomWaiters.length) this.wakeRoomWaiters();
  }

  /**
   * Place waiting sends while there is room, oldest first and synchronously,
   * so a send made meanwhile (from a send callback, say) cannot overtake them.
   */
  private wakeRoomWaiters(): void {
    if (this.waking) return;
    this.waking = true;
    let placed = false;
    try {
      while (this.waiterHead < this.roomWaiters.length) {
        const unbounded = this.state === 'closed' || this.failure !== undefined;
        if (!unbounded && this.pendingMessages >= this.opts.maxPendingMessages) break;
        const waiter = this.roomWaiters[this.waiterHead]!;
        this.roomWaiters[this.waiterHead++] = undefined;
        this.pendingMessages++;
        this.placeWithCallback(waiter.entry, waiter.deliverAt, waiter.cb);
        placed = true;
      }
    } finally {
      this.waking = false;
      this.compactWaiters();
    }
    if (placed && this.flushing > 0) this.flushAll();
  }

  private compactWaiters(): void {
    if (this.waiterHead === this.roomWaiters.length) {
      this.roomWaiters = [];
      this.waiterHead = 0;
    } else if (this.waiterHead > 1024 && this.waiterHead * 2 > this.roomWaiters.length) {
      this.roomWaiters = this.roomWaiters.slice(this.waiterHead);
      this.waiterHead = 0;
    }
  }

  /** Time the oldest pending send out when it reaches the send timeout (if no timer is set already). */
  private armSendTimer(since: number): void {
    if (this.sendTimer !== undefined || this.expiring || this.opts.sendTimeoutMs <= 0) return;
    if (this.state === 'closed') return;
    const delay = Math.max(0, since + this.opts.sendTimeoutMs - Date.now());
    this.sendTimer = setTimeout(() => {
      this.sendTimer = undefined;
      this.expireSends();
    }, delay);
  }

  /**
   * Reject every send older than the send timeout: waiting for room, in an
   * open batch or in flight (a batch the broker may still store; its late
   * receipt is ignored). Then time the oldest one left.
   */
  private expireSends(): void {
    const now = Date.now();
    const cutoff = now - this.opts.sendTimeoutMs;
    const err = (): TimeoutError =>
      new TimeoutError(
        `send on ${this.opts.topic} was not acknowledged within the send timeout of ${this.opts.sendTimeoutMs} ms ` +
          `(producer ${this.producerName}${this.state === 'ready' ? '' : ', reconnecting to the broker'}); ` +
          'the broker may still store it: send again or raise sendTimeoutMs',
      );
    // Waiters first: the slots the batches give back below must not go to expired sends.
    while (this.waiterHead < this.roomWaiters.length) {
      const waiter = this.roomWaiters[this.waiterHead]!;
      if (waiter.entry.sendTime > cutoff) break;
      this.roomWaiters[this.waiterHead++] = undefined;
      const e = err();
      // Never inside this bookkeeping: the callback may send again, or throw.
      queueMicrotask(() => waiter.cb(e, undefined));
    }
    this.compactWaiters();
    // No timer while batches are taken out: slots they give back place waiters into new batches.
    this.expiring = true;
    try {
      for (const [key, batch] of [...this.open]) {
        if (batch.since > cutoff) continue;
        this.open.delete(key);
        this.openMessages -= batch.entries.length;
        batch.outcome.reject(err());
        this.release(batch.entries.length);
      }
      if (this.openMessages === 0) this.clearBatchTimer();
      const expired = this.inflight.filter((b) => b.since <= cutoff);
      for (const batch of expired) {
        this.inflight.splice(this.inflight.indexOf(batch), 1);
        this.settleBatch(batch, err());
      }
    } finally {
      this.expiring = false;
    }
    const oldest = this.oldestPending();
    if (oldest !== undefined) this.armSendTimer(oldest);
  }

  /** Send time of the oldest send not settled yet, if any. */
  private oldestPending(): number | undefined {
    let oldest = Number.POSITIVE_INFINITY;
    for (const batch of this.open.values()) oldest = Math.min(oldest, batch.since);
    for (const batch of this.inflight) oldest = Math.min(oldest, batch.since);
    const waiter = this.roomWaiters[this.waiterHead];
    if (waiter) oldest = Math.min(oldest, waiter.entry.sendTime);
    return oldest === Number.POSITIVE_INFINITY ? undefined : oldest;
  }
}
