import { fromGrpcError, InvalidArgumentError, type Logger, type SluiceError } from '@sluice/common';
import type { Message } from './message.js';
import type { Producer } from './producer.js';

/** Where messages go that the application could not process. */
export interface DeadLetterPolicy {
  /**
   * A message delivered this many times without an ack is published to the
   * dead-letter topic and acknowledged instead of being delivered again
   * (it arrives with a redelivery count of `maxRedeliverCount`). With a retry
   * topic, `reconsumeLater` also dead-letters a message once it was retried
   * this many times.
   */
  maxRedeliverCount: number;
  /** Default `<topic>-<subscription>-DLQ`. */
  deadLetterTopic?: string;
  /** Default `<topic>-<subscription>-RETRY` (used when the consumer has `enableRetry`). */
  retryLetterTopic?: string;
  /**
   * Subscription created (from the earliest message) on the dead-letter topic
   * before the first dead letter goes there, so retention cannot drop dead
   * letters nobody subscribed to yet.
   */
  initialSubscriptionName?: string;
}

/** Properties the consumer adds to dead and retried letters (Pulsar's names). */
export const LETTER_PROPERTIES = {
  /** Topic (partition) the message was first published to. */
  realTopic: 'REAL_TOPIC',
  /** Id of the message on that topic. */
  originMessageId: 'ORIGIN_MESSAGE_ID',
  /** How many times `reconsumeLater` sent the message to the retry topic. */
  reconsumeTimes: 'RECONSUMETIMES',
  /** Delay asked for by the last `reconsumeLater` (ms). */
  delayTime: 'DELAY_TIME',
} as const;

/** Retries without a dead-letter policy, as in Pulsar. */
export const DEFAULT_MAX_RECONSUME_TIMES = 16;

export function deadLetterTopicFor(topic: string, subscription: string, policy?: DeadLetterPolicy): string {
  return policy?.deadLetterTopic || `${topic}-${subscription}-DLQ`;
}

export function retryTopicFor(topic: string, subscription: string, policy?: DeadLetterPolicy): string {
  return policy?.retryLetterTopic || `${topic}-${subscription}-RETRY`;
}

export function checkDeadLetterPolicy(policy: DeadLetterPolicy | undefined): void {
  if (policy === undefined) return;
  if (!Number.isInteger(policy.maxRedeliverCount) || policy.maxRedeliverCount < 1) {
    throw new InvalidArgumentError(
      `deadLetterPolicy.maxRedeliverCount ${policy.maxRedeliverCount} is invalid; use a positive integer`,
    );
  }
}

export interface LetterOptions {
  deadLetterTopic: string;
  retryTopic: string;
  initialSubscriptionName: string | undefined;
  createProducer: (topic: string) => Promise<Producer>;
  createSubscription: (topic: string, subscription: string) => Promise<void>;
  logger: Logger;
}

/**
 * Publishes dead and retried letters with producers of its own, opened on
 * first use and reopened after a failure. The caller acknowledges the
 * original only after the letter is stored, so a crash in between
 * duplicates a letter but never loses one.
 */
export class LetterBox {
  private readonly producers = new Map<string, Promise<Producer>>();
  private subscribed: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly opts: LetterOptions) {}

  /** Store `msg` on the dead-letter topic. */
  async deadLetter(msg: Message): Promise<void> {
    if (this.opts.initialSubscriptionName) await this.ensureSubscription(this.opts.initialSubscriptionName);
    const producer = await this.producer(this.opts.deadLetterTopic);
    await producer.send(msg.value, {
      ...(msg.key ? { key: msg.key } : {}),
      properties: withOrigin(msg),
      ...(msg.eventTime > 0 ? { eventTime: msg.eventTime } : {}),
    });
  }

  /** Store `msg` on the retry topic, to be delivered again after `delayMs`. */
  async retry(msg: Message, delayMs: number, reconsumeTimes: number): Promise<void> {
    const producer = await this.producer(this.opts.retryTopic);
    await producer.send(msg.value, {
      ...(msg.key ? { key: msg.key } : {}),
      properties: {
        ...withOrigin(msg),
        [LETTER_PROPERTIES.reconsumeTimes]: String(reconsumeTimes),
        [LETTER_PROPERTIES.delayTime]: String(delayMs),
      },
      ...(msg.eventTime > 0 ? { eventTime: msg.eventTime } : {}),
      deliverAfter: delayMs,
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.producers.values()];
    this.producers.clear();
    await Promise.allSettled(all.map(async (p) => (await p).close()));
  }

  private producer(topic: string): Promise<Producer> {
    if (this.closed) return Promise.reject(new InvalidArgumentError('the consumer is closed'));
    let p = this.producers.get(topic);
    if (!p) {
      p = this.opts.createProducer(topic);
      this.producers.set(topic, p);
      p.catch((err: unknown) => {
        this.producers.delete(topic);
        this.opts.logger.warn({ topic, err: fromGrpcError(err).message }, 'cannot open letter producer');
      });
    }
    return p;
  }

  private ensureSubscription(name: string): Promise<void> {
    if (!this.subscribed) {
      this.subscribed = this.opts
        .createSubscription(this.opts.deadLetterTopic, name)
        .catch((err: unknown) => {
          const e: SluiceError = fromGrpcError(err);
          if (e.code === 'ALREADY_EXISTS') return;
          this.subscribed = undefined;
          throw e;
        });
    }
    return this.subscribed;
  }
}

/** The message's properties plus where it first came from (kept when it was a retry already). */
function withOrigin(msg: Message): Record<string, string> {
  return {
    ...msg.properties,
    [LETTER_PROPERTIES.realTopic]: msg.properties[LETTER_PROPERTIES.realTopic] ?? msg.topic,
    [LETTER_PROPERTIES.originMessageId]: msg.properties[LETTER_PROPERTIES.originMessageId] ?? msg.id,
  };
}
