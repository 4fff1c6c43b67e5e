import type * as grpc from '@grpc/grpc-js';
import {
  ClosedError,
  errorFromCode,
  formatMessageId,
  fromGrpcError,
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
  SubscriptionType__Output,
} from '@sluice/proto';
import { decodeBatch } from './batch-codec.js';
import type { ConnectionPool } from './connection-pool.js';
import { connectToOwner, type TopicLookup } from './lookup.js';
import { compareMessageIds, ORIGIN, type ReceivedMessage, toWireId } from './message.js';
import { retryAfterOpen, retryOnOpen } from './reconnect-policy.js';

export interface NackBackoff {
  /** Delay of the first redelivery after a nack (ms). */
  minDelayMs: number;
  /** Cap of the doubling delay (ms). */
  maxDelayMs: number;
}

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
  maxUnackedMessages: number;
  ackGroupTimeMs: number;
  nackBackoff: NackBackoff;
  operationTimeoutMs: number;
  logger: Logger;
  /** Hands a received message to the consumer's queue. */
  deliver: (msg: ReceivedMessage) => void;
  /** A request failed while the stream lives on (bad ack, corrupt batch). */
  onError: (err: SluiceError) => void;
  /** The subscription cannot be re-established; the consumer is done. */
  onFatal: (err: SluiceError) => void;
}

/** Pending acks kept while disconnected; past this the oldest are dropped (they are redelivered). */
const MAX_PENDING_ACKS = 100_000;

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
  private consumerName: string;
  active = true;

  constructor(
    private readonly pool: ConnectionPool,
    private readonly lookup: TopicLookup,
    private readonly opts: PartitionConsumerOptions,
  ) {
    this.consumerName = opts.consumerName;
  }

  get topic(): string {
    return this.opts.topic;
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

  /** The application took `msg` from the queue: count it toward the next permit grant. */
  taken(msg: ReceivedMessage): boolean {
    const origin = msg[ORIGIN];
    if (origin.generation !== this.generation) return false;
    this.lastDequeued = origin.messageId;
    this.grant(1);
    return true;
  }

  ack(id: MessageId): void {
    if (this.acks.length >= MAX_PENDING_ACKS) this.acks.shift();
    this.acks.push(id);
    this.armAckTimer();
  }

  ackCumulative(id: MessageId): void {
    if (!this.cumulative || compareMessageIds(id, this.cumulative) > 0) this.cumulative = id;
    this.armAckTimer();
  }

  nack(id: MessageId, redeliveryCount: number): void {
    const { minDelayMs, maxDelayMs } = this.opts.nackBackoff;
    const delay = Math.min(maxDelayMs, minDelayMs * 2 ** Math.min(redeliveryCount, 30));
    const list = this.nacks.get(delay) ?? [];
    list.push(id);
    this.nacks.set(delay, list);
    this.armAckTimer();
  }

  /** Send grouped acks now, then close the stream. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.flushAcks();
    this.state = 'closed';
    this.abort.abort();
    clearTimeout(this.ackTimer);
    const call = this.call;
    this.call = undefined;
    this.generation++;
    if (call) await endCall(call);
  }

  private grant(n: number): void {
    this.unflowed += n;
    const threshold = Math.max(1, Math.floor(this.opts.receiverQueueSize / 2));
    if (this.unflowed >= threshold && this.state === 'ready') {
      this.call?.write({ flow: { permits: this.unflowed } });
      this.unflowed = 0;
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
      call.write({ ack: { messageIds: this.acks.map(toWireId), type: 'ACK_TYPE_UNSPECIFIED' } });
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
          this.onSubscribed(call, res.subscribed.consumerName);
          resolve();
          return;
        }
        if (call !== this.call) return;
        switch (res.response) {
          case 'deliveries':
            for (const d of res.deliveries?.deliveries ?? []) this.onDelivery(d);
            break;
          case 'activeChange':
            this.active = res.activeChange?.isActive ?? this.active;
            break;
          case 'error':
            if (res.error)
              this.opts.onError(errorFromCode(res.error.errorCode || 'INTERNAL', res.error.message));
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
      const start = this.opts.nonDurable ? (this.lastDequeued ?? this.opts.startMessageId) : undefined;
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

  private onSubscribed(call: Call, name: string): void {
    if (this.abort.signal.aborted) {
      void endCall(call);
      return;
    }
    this.call = call;
    this.consumerName = name || this.consumerName;
    this.generation++;
    this.unflowed = 0;
    this.state = 'ready';
    call.write({ flow: { permits: this.opts.receiverQueueSize } });
    this.flushAcks();
  }

  private onDelivery(d: Delivery__Output): void {
    const first = d.messageId;
    const count = d.batch?.header?.count ?? 0;
    if (!first || !d.batch) return;
    let messages: ReturnType<typeof decodeBatch>['messages'];
    try {
      messages = decodeBatch(d.batch).messages;
    } catch (err) {
      // Never hand out a batch we cannot read; it stays unacknowledged on the broker.
      this.grant(count);
      this.opts.onError(fromGrpcError(err));
      return;
    }
    const acked = d.ackedIndexes.length > 0 ? new Set(d.ackedIndexes) : undefined;
    let skipped = 0;
    for (let i = 0; i < messages.length; i++) {
      const id: MessageId = {
        ledgerId: first.ledgerId,
        entryId: first.entryId,
        batchIndex: first.batchIndex + i,
        partition: this.opts.partition,
      };
      if (
        acked?.has(id.batchIndex) ||
        (this.lastDequeued && compareMessageIds(id, this.lastDequeued) <= 0 && this.opts.nonDurable)
      ) {
        skipped++;
        continue;
      }
      const m = messages[i]!;
      const msg: ReceivedMessage = {
        id: formatMessageId(id),
        key: m.key,
        value: m.value,
        properties: m.properties,
        publishTime: d.publishTime,
        eventTime: m.eventTime,
        redeliveryCount: d.redeliveryCount,
        producerName: d.producerName,
        topic: this.opts.topic,
        [ORIGIN]: { messageId: id, generation: this.generation, partitionIndex: this.opts.partition },
      };
      this.opts.deliver(msg);
    }
    if (skipped > 0) this.grant(skipped);
  }

  private onStreamDown(err: SluiceError): void {
    this.call = undefined;
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

function endCall(call: Call): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      call.cancel();
      resolve();
    }, 1000);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    call.on('status', done);
    call.on('error', done);
    call.end();
  });
}
