import { randomBytes } from 'node:crypto';
import type { ServerDuplexStream, ServiceDefinition } from '@grpc/grpc-js';
import {
  asSluiceError,
  FailedPreconditionError,
  formatMessageId,
  InternalError,
  InvalidArgumentError,
  type Logger,
  NotFoundError,
  type Position,
} from '@sluice/common';
import {
  type ConsumeRequest__Output,
  type ConsumeResponse,
  type Delivery,
  encodeDeliveriesResponse,
  type MessageId__Output,
} from '@sluice/proto';
import { Consumer, type ConsumerSink } from './consumer.js';
import type { SubscriptionKind } from './consumer-selector.js';
import { endWithError, oneofCase } from './grpc-util.js';
import type { AckId, Subscription } from './subscription.js';
import type { Topic } from './topic.js';
import type { TopicManager } from './topic-manager.js';
import { checkSubscriptionName, parseTopicName } from './topic-name.js';

type Call = ServerDuplexStream<ConsumeRequest__Output, ConsumeResponse>;

export const DEFAULT_MAX_UNACKED = 1000;

const TYPES: Record<string, SubscriptionKind> = {
  SUBSCRIPTION_TYPE_UNSPECIFIED: 'exclusive',
  SUBSCRIPTION_TYPE_EXCLUSIVE: 'exclusive',
  SUBSCRIPTION_TYPE_FAILOVER: 'failover',
  SUBSCRIPTION_TYPE_SHARED: 'shared',
  SUBSCRIPTION_TYPE_KEY_SHARED: 'key_shared',
};

export const SUBSCRIPTION_TYPE_NAMES: Record<SubscriptionKind, string> = {
  exclusive: 'SUBSCRIPTION_TYPE_EXCLUSIVE',
  failover: 'SUBSCRIPTION_TYPE_FAILOVER',
  shared: 'SUBSCRIPTION_TYPE_SHARED',
  key_shared: 'SUBSCRIPTION_TYPE_KEY_SHARED',
};

function subscriptionKind(type: unknown): SubscriptionKind {
  const kind = typeof type === 'string' ? TYPES[type] : undefined;
  if (!kind) {
    throw new InvalidArgumentError(
      `subscription type '${String(type)}' is unknown; use exclusive, failover, shared or key_shared`,
    );
  }
  return kind;
}

function ackIds(ids: MessageId__Output[] | undefined): AckId[] {
  if (!ids || ids.length === 0) throw new InvalidArgumentError('no message ids given; list at least one');
  return wireIds(ids);
}

function wireIds(ids: MessageId__Output[]): AckId[] {
  return ids.map((m) => {
    const id = { ledgerId: Number(m.ledgerId), entryId: Number(m.entryId), batchIndex: m.batchIndex };
    if (
      !Number.isSafeInteger(id.ledgerId) ||
      id.ledgerId < 0 ||
      !Number.isSafeInteger(id.entryId) ||
      id.entryId < 0
    ) {
      throw new InvalidArgumentError(`message id ${id.ledgerId}:${id.entryId}:${id.batchIndex} is malformed`);
    }
    return id;
  });
}

let generated = 0;
const namePrefix = randomBytes(3).toString('hex');

/** One Consume stream: subscribe, then flow / ack / nack / seek. */
class ConsumerStream implements ConsumerSink {
  private state: 'awaiting-subscribe' | 'subscribing' | 'open' | 'closed' = 'awaiting-subscribe';
  private consumer: Consumer | undefined;
  private sub: Subscription | undefined;
  /** Set for a non-durable reader: the topic that owns its in-memory subscription. */
  private readerOf: Topic | undefined;
  /** Requests that arrived while subscribing, applied in order once attached. */
  private early: ConsumeRequest__Output[] = [];

  constructor(
    private readonly call: Call,
    private readonly topics: TopicManager,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.call.on('data', (req: ConsumeRequest__Output) => this.onRequest(req));
    this.call.on('end', () => this.close());
    this.call.on('error', () => this.detach());
    this.call.on('cancelled', () => this.detach());
    this.call.on('close', () => this.detach());
  }

  deliver(deliveries: Delivery[]): void {
    if (this.state === 'closed' || this.call.writableEnded) return;
    this.call.write({ deliveries: { deliveries } });
  }

  activeChange(isActive: boolean): void {
    if (this.state === 'closed' || this.call.writableEnded) return;
    // Attaching may change the active consumer before 'subscribed' is written; 'subscribed' comes first.
    if (this.state !== 'open') this.pendingActive = isActive;
    else this.call.write({ activeChange: { isActive } });
  }

  private pendingActive: boolean | undefined;

  error(err: unknown): void {
    if (this.state === 'closed' || this.call.writableEnded) return;
    const e = asSluiceError(err);
    this.call.write({ error: { code: e.grpcStatus, errorCode: e.code, message: e.message } });
  }

  close(err?: unknown): void {
    if (err) endWithError(this.call, err);
    else if (!this.call.writableEnded) this.call.end();
    this.detach();
  }

  private detach(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    if (this.consumer && this.sub) this.sub.removeConsumer(this.consumer);
    if (this.readerOf && this.sub) {
      this.readerOf
        .closeReader(this.sub)
        .catch((err) => this.logger.debug({ err }, 'closing a non-durable reader failed'));
    }
  }

  private onRequest(req: ConsumeRequest__Output): void {
    const kind = oneofCase(req, 'request');
    if (this.state === 'awaiting-subscribe') {
      if (kind !== 'subscribe' || !req.subscribe) {
        this.close(new InvalidArgumentError("the first message of a Consume stream must be 'subscribe'"));
        return;
      }
      this.state = 'subscribing';
      this.subscribe(req).catch((err) => this.close(err));
      return;
    }
    if (this.state === 'subscribing') {
      if (this.early.length >= 1000) {
        this.close(new InvalidArgumentError('too many requests before the subscription was confirmed'));
        return;
      }
      this.early.push(req);
      return;
    }
    if (this.state === 'closed') return;
    try {
      this.apply(req, kind);
    } catch (err) {
      this.error(err);
    }
  }

  private apply(req: ConsumeRequest__Output, kind: string | undefined): void {
    const sub = this.sub!;
    const c = this.consumer!;
    switch (kind) {
      case 'flow':
        sub.flow(c, req.flow!.permits);
        return;
      case 'ack': {
        const ack = req.ack!;
        const cumulative = ack.type === 'ACK_TYPE_CUMULATIVE';
        const entries = ack.entryIds ?? [];
        if (entries.length > 0 && cumulative) {
          throw new InvalidArgumentError(
            'entry_ids acknowledge whole entries individually; send a cumulative ack as one message_id',
          );
        }
        const unknown =
          ack.messageIds.length > 0 || entries.length === 0
            ? sub.ack(c, ackIds(ack.messageIds), cumulative)
            : [];
        const unknownEntries = entries.length > 0 ? sub.ackEntries(c, wireIds(entries)) : [];
        if (unknown.length > 0) this.error(notAwaiting(unknown.map(formatAckId)));
        if (unknownEntries.length > 0) {
          this.error(notAwaiting(unknownEntries.map((e) => `${e.ledgerId}:${e.entryId} (whole entry)`)));
        }
        return;
      }
      case 'nack': {
        const delay = Number(req.nack!.delayMs);
        if (!Number.isSafeInteger(delay) || delay < 0) {
          throw new InvalidArgumentError(`nack delay ${req.nack!.delayMs} ms is invalid; use 0 or more`);
        }
        const unknown = sub.nack(c, ackIds(req.nack!.messageIds), delay);
        if (unknown.length > 0) this.error(notAwaiting(unknown.map(formatAckId)));
        return;
      }
      case 'seek':
        this.seek(req).catch((err) => this.error(err));
        return;
      case 'subscribe':
        throw new InvalidArgumentError(
          "'subscribe' may only be sent once per Consume stream; open a new stream",
        );
      default:
        throw new InvalidArgumentError('a Consume request must set subscribe, flow, ack, nack or seek');
    }
  }

  private async seek(req: ConsumeRequest__Output): Promise<void> {
    const seek = req.seek!;
    const sub = this.sub!;
    const topic = this.topics.served(parseTopicName(this.topicName));
    if (!topic) throw new FailedPreconditionError('the topic moved; reconnect');
    if (oneofCase(seek, 'target') === 'messageId' && seek.messageId) {
      await sub.reset(wirePosition(seek.messageId));
    } else if (oneofCase(seek, 'target') === 'publishTime') {
      await sub.reset(await topic.seekByTime(Number(seek.publishTime)));
    } else {
      throw new InvalidArgumentError('seek needs a message_id or a publish_time');
    }
    if (!this.call.writableEnded) this.call.write({ seekDone: {} });
  }

  private topicName = '';

  private async subscribe(req: ConsumeRequest__Output): Promise<void> {
    const s = req.subscribe!;
    const kind = subscriptionKind(s.type);
    const name = parseTopicName(s.topic);
    this.topicName = name.full;
    if (!s.nonDurable || s.subscription) checkSubscriptionName(s.subscription);
    const maxUnacked = s.maxUnackedMessages > 0 ? s.maxUnackedMessages : DEFAULT_MAX_UNACKED;
    const initial = s.initialPosition === 'INITIAL_POSITION_EARLIEST' ? 'earliest' : 'latest';
    const topic = await this.topics.acquire(name);
    let sub: Subscription;
    /** A reader's resolved start, told to the client so it can resume there after a reconnect. */
    let readerStart: Position | undefined;
    if (s.nonDurable) {
      if (this.state === 'closed') return;
      const reader = topic.openReader(
        s.subscription || 'reader',
        s.startMessageId ? { id: wirePosition(s.startMessageId) } : initial,
      );
      sub = reader.subscription;
      readerStart = reader.start;
      this.readerOf = topic;
    } else {
      sub = await topic.subscription(s.subscription, kind, initial);
    }
    if (this.state === 'closed') {
      if (this.readerOf) await this.readerOf.closeReader(sub);
      return;
    }
    const consumerName = s.consumerName || `consumer-${namePrefix}-${++generated}`;
    const consumer = new Consumer(consumerName, s.priority, maxUnacked, this);
    sub.addConsumer(consumer);
    this.call.write({
      subscribed: {
        consumerName,
        partition: name.partition,
        acceptsEntryAcks: true,
        ...(readerStart
          ? { startMessageId: { ...readerStart, batchIndex: 0, partition: name.partition } }
          : {}),
      },
    });
    this.consumer = consumer;
    this.sub = sub;
    this.state = 'open';
    if (this.pendingActive !== undefined) this.call.write({ activeChange: { isActive: this.pendingActive } });
    this.pendingActive = undefined;
    this.logger.debug(
      { topic: name.full, sub: s.subscription, consumer: consumerName, kind },
      'consumer attached',
    );
    for (const early of this.early.splice(0)) {
      if (this.state !== 'open') break;
      try {
        this.apply(early, oneofCase(early, 'request'));
      } catch (err) {
        this.error(err);
      }
    }
  }
}

/** A wire message id as a log position (entry granularity). */
function wirePosition(m: MessageId__Output): { ledgerId: number; entryId: number } {
  const p = { ledgerId: Number(m.ledgerId), entryId: Number(m.entryId) };
  if (
    !Number.isSafeInteger(p.ledgerId) ||
    p.ledgerId < 0 ||
    !Number.isSafeInteger(p.entryId) ||
    p.entryId < 0
  ) {
    throw new InvalidArgumentError(
      `message id ${m.ledgerId}:${m.entryId} is malformed; use ledgerId:entryId:batchIndex`,
    );
  }
  return p;
}

const formatAckId = (id: AckId): string => formatMessageId({ ...id, partition: -1 });

function notAwaiting(ids: string[]): NotFoundError {
  const list = ids.slice(0, 5).join(', ');
  return new NotFoundError(
    `message id(s) ${list}${ids.length > 5 ? ` and ${ids.length - 5} more` : ''} were not delivered to this consumer or are already acknowledged; nothing was changed for them`,
  );
}

/** ConsumerService.Consume. */
/**
 * sluice.v1.ConsumerService with the responses that carry deliveries on the
 * hand-written encoder of @sluice/proto (one Buffer per response instead of
 * protobufjs's message objects and its own Buffer, which grpc-js copied
 * again); every other response keeps the generated codec.
 */
export function consumerServiceDefinition(base: ServiceDefinition): ServiceDefinition {
  const consume = base.Consume;
  if (!consume) throw new InternalError('broker.proto lacks ConsumerService.Consume; rebuild @sluice/proto');
  const generated = consume.responseSerialize as (v: ConsumeResponse) => Buffer;
  return {
    ...base,
    Consume: {
      ...consume,
      responseSerialize: (v: ConsumeResponse) =>
        v.deliveries ? encodeDeliveriesResponse(v.deliveries.deliveries ?? []) : generated(v),
    },
  };
}

export function createConsumerService(
  topics: TopicManager,
  logger: Logger,
): { Consume: (call: Call) => void } {
  return {
    Consume(call: Call): void {
      new ConsumerStream(call, topics, logger).start();
    },
  };
}
