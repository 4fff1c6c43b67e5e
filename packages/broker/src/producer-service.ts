import { randomBytes } from 'node:crypto';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import {
  asSluiceError,
  FailedPreconditionError,
  InvalidArgumentError,
  type Logger,
  ResourceExhaustedError,
} from '@sluice/common';
import type { ProduceRequest__Output, ProduceResponse, SendBatch__Output } from '@sluice/proto';
import { CODEC_NUMBERS, MAX_BATCH_KEY_BYTES, MAX_BATCH_MESSAGES } from './entry-envelope.js';
import { endWithError, oneofCase } from './grpc-util.js';
import type { ProducerAccessMode, ProducerHandle, Topic } from './topic.js';
import type { TopicManager } from './topic-manager.js';
import { parseTopicName } from './topic-name.js';

export interface ProducerServiceOptions {
  /** Sends in flight per producer before the broker stops reading its stream (back-pressure). */
  maxInFlight: number;
  /** Observes seconds from receiving a SendBatch to writing its receipt (stored or duplicate). */
  observePublishLatency?: (seconds: number) => void;
  /** Prefix of generated producer names (unique per broker process). */
  namePrefix: string;
}

type Call = ServerDuplexStream<ProduceRequest__Output, ProduceResponse>;

const ACCESS_MODES: Record<string, ProducerAccessMode> = {
  PRODUCER_ACCESS_MODE_UNSPECIFIED: 'shared',
  PRODUCER_ACCESS_MODE_EXCLUSIVE: 'exclusive',
  PRODUCER_ACCESS_MODE_WAIT_FOR_EXCLUSIVE: 'wait_for_exclusive',
};

let generated = 0;

/** One Produce stream: open, then any number of sends answered in order. */
class ProducerStream implements ProducerHandle {
  name = '';
  private topic: Topic | undefined;
  private state: 'awaiting-open' | 'opening' | 'open' | 'closed' = 'awaiting-open';
  private inFlight = 0;
  private paused = false;
  /** Receipts go out in send order even when a duplicate resolves early. */
  private tail: Promise<void> = Promise.resolve();
  /** Admission (backlog quota, rate limit) in send order: each batch waits for the one before. */
  private gate: Promise<void> = Promise.resolve();
  private ending = false;
  private readonly aborted = new AbortController();

  constructor(
    private readonly call: Call,
    private readonly topics: TopicManager,
    private readonly opts: ProducerServiceOptions,
    private readonly logger: Logger,
    private readonly register: (p: ProducerStream) => () => void,
  ) {}

  private unregister: (() => void) | undefined;

  start(): void {
    this.unregister = this.register(this);
    this.call.on('data', (req: ProduceRequest__Output) => this.onRequest(req));
    this.call.on('end', () => {
      this.ending = true;
      void this.tail.then(() => this.finish());
    });
    this.call.on('error', () => this.cleanup());
    this.call.on('cancelled', () => this.cleanup());
    this.call.on('close', () => this.cleanup());
  }

  get connected(): boolean {
    return this.state !== 'closed' && !this.call.cancelled && !this.call.destroyed;
  }

  kick(err: unknown): void {
    endWithError(this.call, err);
    this.cleanup();
  }

  private isClosed(): boolean {
    return this.state === 'closed';
  }

  private finish(): void {
    if (!this.call.writableEnded) this.call.end();
    this.cleanup();
  }

  private cleanup(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.aborted.abort();
    this.topic?.removeProducer(this);
    this.unregister?.();
  }

  private onRequest(req: ProduceRequest__Output): void {
    const kind = oneofCase(req, 'request');
    if (this.state === 'awaiting-open') {
      if (kind !== 'open' || !req.open) {
        this.kick(
          new InvalidArgumentError("the first message of a Produce stream must be 'open' (OpenProducer)"),
        );
        return;
      }
      this.state = 'opening';
      this.open(req).catch((err) => this.kick(err));
      return;
    }
    if (kind === 'open') {
      this.kick(
        new InvalidArgumentError("'open' may only be sent once per Produce stream; open a new stream"),
      );
      return;
    }
    if (kind !== 'send' || !req.send) {
      this.kick(new InvalidArgumentError('a Produce request must set open or send'));
      return;
    }
    this.onSend(req.send);
  }

  private async open(req: ProduceRequest__Output): Promise<void> {
    const open = req.open!;
    const name = parseTopicName(open.topic);
    const topic = await this.topics.acquire(name);
    if (this.isClosed()) return;
    this.name = open.producerName || `${this.opts.namePrefix}-${++generated}`;
    if (this.name.length > 256) throw new InvalidArgumentError('producer name is longer than 256 characters');
    const mode = ACCESS_MODES[String(open.accessMode)];
    if (!mode) {
      throw new InvalidArgumentError(
        `producer access mode '${String(open.accessMode)}' is unknown; use shared, exclusive or wait-for-exclusive`,
      );
    }
    await topic.addProducer(this, mode, this.aborted.signal);
    if (this.isClosed()) {
      topic.removeProducer(this);
      return;
    }
    this.topic = topic;
    this.state = 'open';
    this.call.write({
      opened: {
        producerName: this.name,
        lastSequenceId: topic.lastSequenceId(this.name),
        maxMessageSize: topic.policies.maxMessageSize,
      },
    });
  }

  private onSend(send: SendBatch__Output): void {
    if (this.state !== 'open' || !this.topic) {
      this.kick(new FailedPreconditionError("send before the producer was opened; wait for 'opened'"));
      return;
    }
    const receivedAt = performance.now();
    const topic = this.topic;
    const batch = send.batch;
    const seq = Number(batch?.header?.firstSequenceId ?? -1);
    let work: Promise<ProduceResponse>;
    const refuse = (err: unknown): Promise<ProduceResponse> => {
      const e = asSluiceError(err);
      return Promise.resolve({
        error: { sequenceId: seq, code: e.grpcStatus, errorCode: e.code, message: e.message },
      });
    };
    if (!batch?.header || !batch.payload) {
      work = refuse(
        new InvalidArgumentError('send has no batch header or payload; set batch.header and batch.payload'),
      );
    } else if (!(batch.header.count >= 1)) {
      work = refuse(
        new InvalidArgumentError(
          `batch header count is ${batch.header.count}; a batch holds at least 1 message`,
        ),
      );
    } else if (batch.header.count > MAX_BATCH_MESSAGES) {
      work = refuse(
        new InvalidArgumentError(
          `batch header count is ${batch.header.count}, over the limit of ${MAX_BATCH_MESSAGES} messages per batch; send smaller batches (lower batching.maxMessages)`,
        ),
      );
    } else if (!Number.isSafeInteger(seq) || seq < 0) {
      work = refuse(
        new InvalidArgumentError(`first_sequence_id ${seq} is invalid; use a non-negative integer`),
      );
    } else if (batch.payload.length > topic.policies.maxMessageSize) {
      work = refuse(
        new InvalidArgumentError(
          `batch of ${batch.payload.length} bytes exceeds the max message size of ${topic.policies.maxMessageSize} bytes; send smaller batches or raise the namespace's max message size`,
        ),
      );
    } else if (Buffer.byteLength(batch.header.key, 'utf8') > MAX_BATCH_KEY_BYTES) {
      work = refuse(
        new InvalidArgumentError(
          `batch key of ${Buffer.byteLength(batch.header.key, 'utf8')} bytes exceeds the limit of ${MAX_BATCH_KEY_BYTES} bytes; use a shorter ordering key`,
        ),
      );
    } else if (CODEC_NUMBERS[String(batch.header.codec)] === undefined) {
      work = refuse(
        new InvalidArgumentError(
          `batch codec '${String(batch.header.codec)}' is unknown; use none, lz4, zstd, gzip or deflate`,
        ),
      );
    } else if (batch.header.count > messageBytes(batch.header, batch.payload.length)) {
      work = refuse(
        new InvalidArgumentError(
          `batch header count is ${batch.header.count} but the batch holds ${messageBytes(batch.header, batch.payload.length)} bytes of messages (uncompressed), and each message takes at least 1 byte; set count to the number of messages in the batch`,
        ),
      );
    } else if (tooLate(Number(batch.header.deliverAt), topic.policies.maxDeliveryDelayMs)) {
      work = refuse(
        new InvalidArgumentError(
          `deliver_at ${Number(batch.header.deliverAt)} is ${Number(batch.header.deliverAt) - Date.now()} ms away, beyond the namespace's max delivery delay of ${topic.policies.maxDeliveryDelayMs} ms; deliver sooner or raise max_delivery_delay_ms`,
        ),
      );
    } else {
      this.inFlight++;
      if (this.inFlight >= this.opts.maxInFlight && !this.paused) {
        this.paused = true;
        this.call.pause();
      }
      const header = batch.header;
      const payload = batch.payload;
      const admitted = this.gate.then(() => topic.admit(header.count, payload.length));
      // A refused batch does not hold up the ones behind it.
      this.gate = admitted.catch(() => undefined);
      work = admitted
        .then(() => topic.publish(this.name, header, payload))
        .then(
          (r) => ({
            receipt: {
              sequenceId: seq,
              messageId: r.position
                ? {
                    ledgerId: r.position.ledgerId,
                    entryId: r.position.entryId,
                    batchIndex: 0,
                    partition: topic.name.partition,
                  }
                : null,
              count: header.count,
              duplicate: r.duplicate,
            },
          }),
          (err) => {
            const e = asSluiceError(err);
            // Storage failures end the stream: the client resends everything pending, in order, with dedup.
            if (e instanceof ResourceExhaustedError || e instanceof InvalidArgumentError) return refuse(e);
            throw e;
          },
        );
      work = work.finally(() => {
        this.inFlight--;
        if (this.paused && this.inFlight <= this.opts.maxInFlight / 2) {
          this.paused = false;
          this.call.resume();
        }
      });
    }
    this.tail = this.tail.then(async () => {
      if (this.state === 'closed') return;
      try {
        const res = await work;
        if (!this.isClosed() && !this.call.writableEnded) {
          this.call.write(res);
          if (res.receipt) this.opts.observePublishLatency?.((performance.now() - receivedAt) / 1000);
        }
      } catch (err) {
        this.logger.debug(
          { err, topic: topic.name.full, producer: this.name },
          'send failed; ending the stream',
        );
        this.kick(err);
      }
    });
    if (this.ending) void this.tail.then(() => this.finish());
  }
}

/**
 * Bytes the batch's serialized messages take: the payload itself when it is
 * not compressed, else the uncompressed size the producer declares (the
 * broker does not inflate batches; a consumer checks the declared size when
 * it does). Every message takes at least 2 bytes there, its field tag and
 * length (client batch-codec.ts); the check allows 1, so a count above this
 * cannot be right whatever the producer put in the payload.
 */
function messageBytes(header: { codec: unknown; uncompressedSize: number }, payloadBytes: number): number {
  return CODEC_NUMBERS[String(header.codec)] === 0 ? payloadBytes : header.uncompressedSize;
}

/** True when `deliverAt` lies further ahead than the max delivery delay (0 = unlimited). */
function tooLate(deliverAt: number, maxDelayMs: number): boolean {
  return maxDelayMs > 0 && deliverAt > 0 && deliverAt - Date.now() > maxDelayMs;
}

/** ProducerService.Produce. */
export function createProducerService(
  topics: TopicManager,
  opts: ProducerServiceOptions,
  logger: Logger,
  register: (p: ProducerHandle) => () => void,
): { Produce: (call: Call) => void } {
  return {
    Produce(call: Call): void {
      new ProducerStream(call, topics, opts, logger, register).start();
    },
  };
}

export const generateNamePrefix = (brokerId: string): string =>
  `${brokerId}-${randomBytes(3).toString('hex')}`;
