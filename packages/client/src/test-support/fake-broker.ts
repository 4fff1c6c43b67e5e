/**
 * An in-process fake of the broker's client API for the SDK's unit tests:
 * a tiny log per topic, dedup by (producer, sequence id), one cursor per
 * subscription, permits, redirects and injectable stream failures. Only the
 * behaviour the SDK depends on; never a proof that the real broker works.
 */
import * as grpc from '@grpc/grpc-js';
import { NotOwnerError, type SluiceError, toGrpcStatus, UnavailableError } from '@sluice/common';
import type {
  ConsumeRequest__Output,
  ConsumeResponse,
  MessageBatch__Output,
  ProduceRequest__Output,
  ProduceResponse,
} from '@sluice/proto';
import { loadProto } from '@sluice/proto';

export interface StoredEntry {
  ledgerId: number;
  entryId: number;
  batch: MessageBatch__Output;
  publishTime: number;
  producerName: string;
}

interface Cursor {
  next: number;
  acked: Set<string>;
  /** Entries nacked and due again, sent before new ones. */
  replay: StoredEntry[];
  /** Times each entry ("l:e") was redelivered. */
  redeliveries: Map<string, number>;
}

interface TopicState {
  entries: StoredEntry[];
  lastSequence: Map<string, { seq: number; ids: Map<number, StoredEntry> }>;
  cursors: Map<string, Cursor>;
}

/** State shared by fake brokers of one fake cluster. */
export class FakeCluster {
  readonly topics = new Map<string, TopicState>();
  readonly partitions = new Map<string, number>();
  ledgerId = 7;
  private producerSeq = 0;

  topic(name: string): TopicState {
    let t = this.topics.get(name);
    if (!t) {
      t = { entries: [], lastSequence: new Map(), cursors: new Map() };
      this.topics.set(name, t);
    }
    return t;
  }

  newProducerName(): string {
    return `fake-${++this.producerSeq}`;
  }
}

export interface FakeBrokerOptions {
  /** Address Lookup answers (default: this broker's own). */
  lookupAnswer?: () => string;
  /** When set, Produce/Consume/Admin topic calls are refused with a redirect to this address. */
  redirectTo?: () => string | undefined;
}

type ProduceCall = grpc.ServerDuplexStream<ProduceRequest__Output, ProduceResponse>;
type ConsumeCall = grpc.ServerDuplexStream<ConsumeRequest__Output, ConsumeResponse>;

export class FakeBroker {
  readonly produceCalls = new Set<ProduceCall>();
  readonly consumeCalls = new Set<ConsumeCall>();
  /** Every Flow permit grant received, in order. */
  readonly flows: number[] = [];
  /** Every ack request received (ids as "l:e:i", type). */
  readonly acks: { ids: string[]; type: string }[] = [];
  readonly nacks: { ids: string[]; delayMs: number }[] = [];
  /** Every OpenProducer received (topic, access mode). */
  readonly opens: { topic: string; accessMode: string }[] = [];
  /** Every Seek received. */
  readonly seeks: { messageId?: string; publishTime?: number }[] = [];
  /** Every Subscribe received (as the broker saw it). */
  readonly subscribes: {
    topic: string;
    subscription: string;
    nonDurable: boolean;
    startMessageId?: string;
  }[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Batches received (including duplicates), by first sequence id. */
  readonly received: number[] = [];
  /** Hold receipts instead of answering (released by `releaseReceipts`). */
  holdReceipts = false;
  private held: (() => void)[] = [];
  /** Refuse acks of ids already acknowledged with NOT_FOUND, as the broker does. */
  refuseUnknownAcks = false;
  /** Hold Seeks unanswered (and the cursor where it was) until `answerSeek`. */
  holdSeeks = false;
  private heldSeeks: ((err?: { code: number; errorCode: string; message: string }) => void)[] = [];
  /** Admin calls received, by method name. */
  readonly adminCalls: string[] = [];
  /** Fail the next admin calls, one each: with the error, or 'stall' (never answer; the client's deadline passes). */
  readonly adminFailures: (SluiceError | 'stall')[] = [];
  /** Refuse the next OpenProducers with these errors, one each (as the broker refuses a producer name in use). */
  readonly refuseOpens: SluiceError[] = [];
  /** Send this SendError instead of storing, once per sequence id listed. */
  readonly refuse = new Map<number, { code: number; errorCode: string; message: string }>();
  address = '';
  private server = new grpc.Server();

  constructor(
    readonly cluster: FakeCluster,
    private readonly opts: FakeBrokerOptions = {},
  ) {}

  static async start(cluster: FakeCluster, opts: FakeBrokerOptions = {}, port = 0): Promise<FakeBroker> {
    const b = new FakeBroker(cluster, opts);
    await b.listen(port);
    return b;
  }

  async listen(port: number): Promise<void> {
    this.server = new grpc.Server();
    const broker = loadProto('broker.proto').sluice as unknown as {
      v1: Record<string, { service: grpc.ServiceDefinition }>;
    };
    const admin = loadProto('admin.proto').sluice as unknown as {
      v1: Record<string, { service: grpc.ServiceDefinition }>;
    };
    this.server.addService(broker.v1.LookupService!.service, {
      Lookup: (_call: unknown, cb: grpc.sendUnaryData<unknown>) =>
        cb(null, { brokerAddress: this.opts.lookupAnswer?.() ?? this.address }),
      GetTopicMetadata: (
        call: grpc.ServerUnaryCall<{ topic: string }, unknown>,
        cb: grpc.sendUnaryData<unknown>,
      ) => cb(null, { partitions: this.cluster.partitions.get(call.request.topic) ?? 0 }),
    });
    this.server.addService(broker.v1.ProducerService!.service, {
      Produce: (call: ProduceCall) => this.produce(call),
    });
    this.server.addService(broker.v1.ConsumerService!.service, {
      Consume: (call: ConsumeCall) => this.consume(call),
    });
    this.server.addService(admin.v1.AdminService!.service, {
      ListTenants: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => {
        if (this.adminFailure('ListTenants', cb)) return;
        const owner = this.opts.redirectTo?.();
        if (owner)
          cb(toGrpcStatus(new NotOwnerError('not the owner', { details: { owner } })) as never, null);
        else cb(null, { tenants: ['public', `from-${this.address}`] });
      },
      CreateTenant: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => {
        if (this.adminFailure('CreateTenant', cb)) return;
        cb(null, {});
      },
    });
    const bound = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    this.address = `127.0.0.1:${bound}`;
  }

  /** Record an admin call; true when it was failed (or left unanswered) as `adminFailures` asked. */
  private adminFailure(method: string, cb: grpc.sendUnaryData<unknown>): boolean {
    this.adminCalls.push(method);
    const failure = this.adminFailures.shift();
    if (failure === undefined) return false;
    if (failure !== 'stall') cb(toGrpcStatus(failure) as never, null);
    return true;
  }

  /** Fail every open stream with UNAVAILABLE, as a crashing broker would. */
  killStreams(): void {
    const status = toGrpcStatus(new UnavailableError('broker going away'));
    for (const c of [...this.produceCalls, ...this.consumeCalls]) c.emit('error', status);
    this.produceCalls.clear();
    this.consumeCalls.clear();
    this.held = [];
    this.heldSeeks = [];
  }

  /** Seeks received and held, not answered yet. */
  get heldSeekCount(): number {
    return this.heldSeeks.length;
  }

  /** Answer the oldest held Seek: move and send SeekDone, or refuse it with `err` (the cursor stays). */
  answerSeek(err?: { code: number; errorCode: string; message: string }): void {
    this.heldSeeks.shift()?.(err);
  }

  releaseReceipts(): void {
    this.holdReceipts = false;
    for (const f of this.held.splice(0)) f();
  }

  /** Store a batch as if a producer had sent it (e.g. one no client could build). */
  publishRaw(topic: string, batch: MessageBatch__Output): StoredEntry {
    const t = this.cluster.topic(topic);
    const entry = {
      ledgerId: this.cluster.ledgerId,
      entryId: t.entries.length,
      batch,
      publishTime: Date.now(),
      producerName: 'raw',
    };
    t.entries.push(entry);
    this.pump(topic);
    return entry;
  }

  stop(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.killStreams();
    this.server.forceShutdown();
    return Promise.resolve();
  }

  private redirect(call: ProduceCall | ConsumeCall): boolean {
    const owner = this.opts.redirectTo?.();
    if (owner === undefined) return false;
    call.emit(
      'error',
      toGrpcStatus(new NotOwnerError('topic is owned by another broker', { details: { owner } })),
    );
    return true;
  }

  private produce(call: ProduceCall): void {
    let topicName = '';
    let producerName = '';
    call.on('error', () => this.produceCalls.delete(call));
    call.on('end', () => {
      this.produceCalls.delete(call);
      call.end();
    });
    call.on('data', (req: ProduceRequest__Output) => {
      if (req.open) {
        if (this.redirect(call)) return;
        this.produceCalls.add(call);
        topicName = req.open.topic;
        this.opens.push({ topic: topicName, accessMode: req.open.accessMode });
        const refusal = this.refuseOpens.shift();
        if (refusal) {
          this.produceCalls.delete(call);
          call.emit('error', toGrpcStatus(refusal));
          return;
        }
        producerName = req.open.producerName || this.cluster.newProducerName();
        const last = this.cluster.topic(topicName).lastSequence.get(producerName)?.seq ?? -1;
        call.write({ opened: { producerName, lastSequenceId: last, maxMessageSize: 64 * 1024 } });
        return;
      }
      const batch = req.send?.batch;
      if (!batch?.header) return;
      const seq = batch.header.firstSequenceId;
      this.received.push(seq);
      const refusal = this.refuse.get(seq);
      if (refusal) {
        this.refuse.delete(seq);
        call.write({ error: { sequenceId: seq, ...refusal } });
        return;
      }
      const topic = this.cluster.topic(topicName);
      const dedup = topic.lastSequence.get(producerName) ?? { seq: -1, ids: new Map() };
      topic.lastSequence.set(producerName, dedup);
      let entry: StoredEntry;
      let duplicate = false;
      if (seq <= dedup.seq) {
        duplicate = true;
        entry = dedup.ids.get(seq)!;
      } else {
        entry = {
          ledgerId: this.cluster.ledgerId,
          entryId: topic.entries.length,
          batch,
          publishTime: Date.now(),
          producerName,
        };
        topic.entries.push(entry);
        dedup.seq = seq + batch.header.count - 1;
        dedup.ids.set(seq, entry);
        this.pump(topicName);
      }
      const answer = () =>
        call.write({
          receipt: {
            sequenceId: seq,
            messageId: { ledgerId: entry.ledgerId, entryId: entry.entryId, batchIndex: 0, partition: -1 },
            count: batch.header!.count,
            duplicate,
          },
        });
      if (this.holdReceipts) this.held.push(answer);
      else answer();
    });
  }

  private readonly subscribers = new Map<string, Set<() => void>>();

  private pump(topic: string): void {
    for (const f of this.subscribers.get(topic) ?? []) f();
  }

  private consume(call: ConsumeCall): void {
    let permits = 0;
    let cursor: Cursor | undefined;
    let topicName = '';
    let redeliveries = 0;
    const send = () => {
      if (!cursor) return;
      const entries = this.cluster.topic(topicName).entries;
      while (permits > 0 && (cursor.replay.length > 0 || cursor.next < entries.length)) {
        const e = cursor.replay.shift() ?? entries[cursor.next++]!;
        const count = e.batch.header!.count;
        const acked: number[] = [];
        for (let i = 0; i < count; i++)
          if (cursor.acked.has(`${e.ledgerId}:${e.entryId}:${i}`)) acked.push(i);
        if (acked.length === count) continue;
        permits -= count;
        call.write({
          deliveries: {
            deliveries: [
              {
                messageId: { ledgerId: e.ledgerId, entryId: e.entryId, batchIndex: 0, partition: -1 },
                batch: e.batch,
                publishTime: e.publishTime,
                redeliveryCount: redeliveries + (cursor.redeliveries.get(`${e.ledgerId}:${e.entryId}`) ?? 0),
                ackedIndexes: acked,
                producerName: e.producerName,
              },
            ],
          },
        });
      }
    };
    const detach = () => {
      this.consumeCalls.delete(call);
      this.subscribers.get(topicName)?.delete(send);
    };
    call.on('error', detach);
    call.on('end', () => {
      detach();
      call.end();
    });
    call.on('data', (req: ConsumeRequest__Output) => {
      if (req.subscribe) {
        if (this.redirect(call)) return;
        this.consumeCalls.add(call);
        topicName = req.subscribe.topic;
        const start = req.subscribe.startMessageId;
        this.subscribes.push({
          topic: topicName,
          subscription: req.subscribe.subscription,
          nonDurable: req.subscribe.nonDurable,
          ...(start ? { startMessageId: `${start.ledgerId}:${start.entryId}:${start.batchIndex}` } : {}),
        });
        const topic = this.cluster.topic(topicName);
        const existing = req.subscribe.nonDurable ? undefined : topic.cursors.get(req.subscribe.subscription);
        // As the broker: a start id means the first stored entry at or after it (or the end).
        const atOrAfter = start
          ? topic.entries.findIndex(
              (e) =>
                e.ledgerId > Number(start.ledgerId) ||
                (e.ledgerId === Number(start.ledgerId) && e.entryId >= Number(start.entryId)),
            )
          : undefined;
        const startIndex =
          atOrAfter === undefined ? undefined : atOrAfter < 0 ? topic.entries.length : atOrAfter;
        cursor = existing ?? {
          next:
            startIndex ??
            (req.subscribe.initialPosition === 'INITIAL_POSITION_EARLIEST' ? 0 : topic.entries.length),
          acked: new Set(),
          replay: [],
          redeliveries: new Map(),
        };
        if (existing) {
          // Rewind to the first entry holding an unacknowledged message (redelivery).
          const first = topic.entries.findIndex((e) =>
            Array.from({ length: e.batch.header!.count }, (_, i) => `${e.ledgerId}:${e.entryId}:${i}`).some(
              (id) => !cursor!.acked.has(id),
            ),
          );
          cursor.next = first < 0 ? topic.entries.length : first;
          redeliveries = 1;
        }
        if (!req.subscribe.nonDurable) topic.cursors.set(req.subscribe.subscription, cursor);
        const set = this.subscribers.get(topicName) ?? new Set();
        this.subscribers.set(topicName, set);
        set.add(send);
        // A reader is told where it starts (the next entry to be stored, at the end).
        const first = topic.entries[cursor.next];
        const readerStart = req.subscribe.nonDurable
          ? {
              ledgerId: first?.ledgerId ?? this.cluster.ledgerId,
              entryId: first?.entryId ?? topic.entries.length,
              batchIndex: 0,
              partition: -1,
            }
          : undefined;
        call.write({
          subscribed: {
            consumerName: req.subscribe.consumerName || 'c-1',
            partition: -1,
            ...(readerStart ? { startMessageId: readerStart } : {}),
          },
        });
      } else if (req.flow) {
        this.flows.push(req.flow.permits);
        permits += req.flow.permits;
        send();
      } else if (req.ack) {
        const ids = req.ack.messageIds.map((m) => `${m.ledgerId}:${m.entryId}:${m.batchIndex}`);
        this.acks.push({ ids, type: req.ack.type });
        const unknown: string[] = [];
        for (const id of ids) {
          if (cursor?.acked.has(id)) unknown.push(id);
          cursor?.acked.add(id);
        }
        if (this.refuseUnknownAcks && unknown.length > 0) {
          call.write({
            error: {
              code: 5,
              errorCode: 'NOT_FOUND',
              message: `message id(s) ${unknown.join(', ')} were not delivered to this consumer or are already acknowledged`,
            },
          });
        }
      } else if (req.nack) {
        const ids = req.nack.messageIds.map((m) => `${m.ledgerId}:${m.entryId}:${m.batchIndex}`);
        const delayMs = Number(req.nack.delayMs);
        this.nacks.push({ ids, delayMs });
        const c = cursor!;
        const entries = this.cluster.topic(topicName).entries;
        const due = entries.filter((e) => req.nack!.messageIds.some((m) => m.entryId === e.entryId));
        const redeliver = () => {
          for (const e of due) {
            const k = `${e.ledgerId}:${e.entryId}`;
            c.redeliveries.set(k, (c.redeliveries.get(k) ?? 0) + 1);
            c.replay.push(e);
          }
          send();
        };
        // As the broker: no delay queues them for redelivery at once, ahead of newer entries.
        if (delayMs === 0) {
          redeliver();
          return;
        }
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          redeliver();
        }, delayMs);
        this.timers.add(timer);
      } else if (req.seek) {
        const c = cursor!;
        const entries = this.cluster.topic(topicName).entries;
        const m = req.seek.messageId;
        const at = Number(req.seek.publishTime);
        if (m) this.seeks.push({ messageId: `${m.ledgerId}:${m.entryId}:${m.batchIndex}` });
        else this.seeks.push({ publishTime: at });
        const answer = (err?: { code: number; errorCode: string; message: string }) => {
          if (err) {
            call.write({ error: err });
            return;
          }
          const i = m
            ? entries.findIndex((e) => e.ledgerId === m.ledgerId && e.entryId === m.entryId)
            : entries.findIndex((e) => e.publishTime >= at);
          c.next = i < 0 ? entries.length : i;
          c.replay = [];
          c.acked.clear();
          call.write({ seekDone: {} });
          send();
        };
        if (this.holdSeeks) this.heldSeeks.push(answer);
        else answer();
      }
    });
  }
}
