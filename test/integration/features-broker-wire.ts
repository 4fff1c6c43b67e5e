/**
 * Raw gRPC helpers for the broker feature tests (features-broker-*.test.ts):
 * produce and consume streams driven message by message, and admin calls,
 * so each test controls exactly what crosses the wire (batch headers, delays,
 * codecs, seeks) independently of the TypeScript SDK.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type ClientDuplexStream,
  credentials,
  Metadata,
  type ServiceClientConstructor,
  type ServiceError,
} from '@grpc/grpc-js';
import { loadProto, MAX_GRPC_MESSAGE_BYTES, PROTO_DIR } from '@sluice/proto';
import anyTest, { type TestFn } from 'ava';
import protobuf from 'protobufjs';
import { type SluiceProcess, startStandalone } from '../support/cluster.js';

const root = protobuf.loadSync(join(PROTO_DIR, 'sluice/v1/batch.proto'));
const BatchMessages = root.lookupType('sluice.v1.BatchMessages');

export interface WireId {
  ledgerId: number;
  entryId: number;
  batchIndex: number;
  partition: number;
}

export interface Delivered {
  id: WireId;
  values: string[];
  publishTime: number;
  redeliveryCount: number;
  deliverAt: number;
}

type Msg = Record<string, unknown>;
type Unary = (req: object, md: Metadata, cb: (err: ServiceError | null, res: Msg) => void) => void;

const OPTS = {
  'grpc.max_send_message_length': MAX_GRPC_MESSAGE_BYTES,
  'grpc.max_receive_message_length': MAX_GRPC_MESSAGE_BYTES,
};

/** A bidi stream with a queue of responses and the final status. */
class Stream {
  private readonly queue: Msg[] = [];
  private waiter: (() => void) | undefined;
  ended: ServiceError | null | undefined;

  constructor(readonly call: ClientDuplexStream<object, Msg>) {
    call.on('data', (d: Msg) => {
      this.queue.push(d);
      this.waiter?.();
    });
    call.on('error', (e: ServiceError) => {
      this.ended = e;
      this.waiter?.();
    });
    call.on('end', () => {
      this.ended ??= null;
      this.waiter?.();
    });
  }

  write(m: object): void {
    this.call.write(m);
  }

  /** Next response, or undefined when none arrives within `timeoutMs`. */
  async next(timeoutMs = 10_000): Promise<Msg | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const d = this.queue.shift();
      if (d) return d;
      if (this.ended !== undefined) throw this.ended ?? new Error('stream ended');
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((r) => {
        this.waiter = r;
        setTimeout(r, left);
      });
      this.waiter = undefined;
    }
  }

  async status(timeoutMs = 10_000): Promise<ServiceError | null | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (this.ended === undefined && Date.now() < deadline) {
      await new Promise<void>((r) => {
        this.waiter = r;
        setTimeout(r, 200);
      });
    }
    return this.ended;
  }

  close(): void {
    this.call.cancel();
  }
}

export interface SendOptions {
  key?: string;
  deliverAt?: number;
  codec?: string | number;
  count?: number;
}

/** A producer stream: `open` then sends answered in order. */
export class WireProducer {
  private seq = 0;
  name = '';
  maxMessageSize = 0;

  constructor(readonly stream: Stream) {}

  /** Build a batch of `values` (one message each) and send it; returns its sequence id. */
  send(values: string[], o: SendOptions = {}): number {
    const messages = values.map((v) => ({
      key: o.key ?? '',
      value: Buffer.from(v),
      properties: {},
      eventTime: 0,
      sendTime: Date.now(),
    }));
    const payload = Buffer.from(BatchMessages.encode({ messages }).finish());
    const seq = this.seq;
    this.seq += values.length;
    this.stream.write({
      send: {
        batch: {
          header: {
            count: o.count ?? values.length,
            firstSequenceId: seq,
            codec: o.codec ?? 0,
            uncompressedSize: payload.length,
            key: o.key ?? '',
            deliverAt: o.deliverAt ?? 0,
          },
          payload,
        },
      },
    });
    return seq;
  }

  /** Send a raw payload of `bytes` bytes as one message batch (not a parseable BatchMessages). */
  sendBytes(bytes: number): number {
    const seq = this.seq++;
    this.stream.write({
      send: {
        batch: {
          header: { count: 1, firstSequenceId: seq, uncompressedSize: bytes },
          payload: Buffer.alloc(bytes, 7),
        },
      },
    });
    return seq;
  }

  /** The next receipt or send error. */
  async response(timeoutMs = 10_000): Promise<{ receipt?: Msg & { messageId: WireId }; error?: Msg }> {
    const r = await this.stream.next(timeoutMs);
    if (!r) throw new Error(`no produce response within ${timeoutMs} ms`);
    return r as never;
  }

  /** Send and wait for the receipt; throws on a send error. */
  async publish(values: string[], o: SendOptions = {}): Promise<WireId> {
    this.send(values, o);
    const r = await this.response();
    if (!r.receipt) throw new Error(`send refused: ${JSON.stringify(r.error)}`);
    return r.receipt.messageId;
  }

  close(): void {
    this.stream.call.end();
  }
}

/** A consumer stream: subscribe, then flow / ack / nack / seek. */
export class WireConsumer {
  private readonly buffered: Delivered[] = [];
  readonly errors: Msg[] = [];
  seekDone = 0;

  constructor(readonly stream: Stream) {}

  flow(permits: number): void {
    this.stream.write({ flow: { permits } });
  }

  ack(...ids: WireId[]): void {
    this.stream.write({ ack: { messageIds: ids } });
  }

  nack(delayMs: number, ...ids: WireId[]): void {
    this.stream.write({ nack: { messageIds: ids, delayMs } });
  }

  /** Seek and wait for SeekDone (or a ConsumeError, returned). */
  async seek(target: { messageId: WireId } | { publishTime: number }): Promise<Msg | undefined> {
    this.stream.write({ seek: target });
    const before = this.seekDone;
    const errors = this.errors.length;
    const deadline = Date.now() + 10_000;
    while (this.seekDone === before && this.errors.length === errors && Date.now() < deadline) {
      await this.pump(200);
    }
    if (this.errors.length > errors) return this.errors[this.errors.length - 1];
    if (this.seekDone === before) throw new Error('no SeekDone within 10 s');
    this.buffered.length = 0;
    return undefined;
  }

  private async pump(timeoutMs: number): Promise<void> {
    const r = await this.stream.next(timeoutMs);
    if (!r) return;
    if (r.seekDone) this.seekDone++;
    else if (r.error) this.errors.push(r.error as Msg);
    else if (r.deliveries) {
      for (const d of (r.deliveries as { deliveries: Msg[] }).deliveries) {
        const batch = d.batch as { header: Msg; payload: Buffer };
        const decoded = BatchMessages.decode(batch.payload) as unknown as {
          messages: { value: Uint8Array }[];
        };
        this.buffered.push({
          id: d.messageId as WireId,
          values: decoded.messages.map((m) => Buffer.from(m.value).toString()),
          publishTime: Number(d.publishTime),
          redeliveryCount: Number(d.redeliveryCount),
          deliverAt: Number(batch.header.deliverAt),
        });
      }
    }
  }

  /** Deliveries (batches) until `n` arrived or `timeoutMs` passed. */
  async receive(n: number, timeoutMs = 10_000): Promise<Delivered[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.buffered.length < n && Date.now() < deadline)
      await this.pump(Math.max(1, deadline - Date.now()));
    return this.buffered.splice(0, n);
  }

  close(): void {
    this.stream.call.end();
    this.stream.close();
  }
}

export interface SubscribeOptions {
  type?: string;
  initialPosition?: 'earliest' | 'latest';
  nonDurable?: boolean;
  startMessageId?: WireId;
}

/** The broker's client-facing services at one address. */
export class Wire {
  private readonly producer: { Produce(): ClientDuplexStream<object, Msg>; close(): void };
  private readonly consumer: { Consume(): ClientDuplexStream<object, Msg>; close(): void };
  private readonly admin: Record<string, Unary> & { close(): void };
  private readonly lookup: Record<string, Unary> & { close(): void };
  private readonly streams: Stream[] = [];

  constructor(address: string) {
    const b = loadProto('broker.proto') as unknown as {
      sluice: { v1: Record<string, ServiceClientConstructor> };
    };
    const a = loadProto('admin.proto') as unknown as {
      sluice: { v1: Record<string, ServiceClientConstructor> };
    };
    const make = (ctor: ServiceClientConstructor) =>
      new ctor(address, credentials.createInsecure(), OPTS) as never;
    this.producer = make(b.sluice.v1.ProducerService!);
    this.consumer = make(b.sluice.v1.ConsumerService!);
    this.lookup = make(b.sluice.v1.LookupService!);
    this.admin = make(a.sluice.v1.AdminService!);
  }

  /** Call an AdminService method. */
  call<T = Msg>(method: string, req: object): Promise<T> {
    return new Promise((resolve, reject) =>
      this.admin[method]!.call(this.admin, req, new Metadata(), (err, res) =>
        err ? reject(err) : resolve(res as T),
      ),
    );
  }

  lookupCall<T = Msg>(method: string, req: object): Promise<T> {
    return new Promise((resolve, reject) =>
      this.lookup[method]!.call(this.lookup, req, new Metadata(), (err, res) =>
        err ? reject(err) : resolve(res as T),
      ),
    );
  }

  /** Open a producer; resolves once `opened` (throws the stream's status on refusal). */
  async produce(topic: string, opts: { accessMode?: string; name?: string } = {}): Promise<WireProducer> {
    const p = new WireProducer(this.track(this.producer.Produce()));
    p.stream.write({ open: { topic, producerName: opts.name ?? '', accessMode: opts.accessMode ?? 0 } });
    const opened = await p.stream.next(30_000);
    if (!opened?.opened) throw new Error(`producer did not open: ${JSON.stringify(opened)}`);
    const o = opened.opened as { producerName: string; maxMessageSize: number };
    p.name = o.producerName;
    p.maxMessageSize = o.maxMessageSize;
    return p;
  }

  /** Start opening a producer without waiting (for wait-for-exclusive). */
  produceStream(topic: string, accessMode: string): Stream {
    const s = this.track(this.producer.Produce());
    s.write({ open: { topic, accessMode } });
    return s;
  }

  async subscribe(topic: string, subscription: string, o: SubscribeOptions = {}): Promise<WireConsumer> {
    const c = new WireConsumer(this.track(this.consumer.Consume()));
    c.stream.write({
      subscribe: {
        topic,
        subscription,
        type: o.type ?? 'SUBSCRIPTION_TYPE_EXCLUSIVE',
        initialPosition:
          o.initialPosition === 'earliest' ? 'INITIAL_POSITION_EARLIEST' : 'INITIAL_POSITION_LATEST',
        nonDurable: o.nonDurable ?? false,
        startMessageId: o.startMessageId ?? null,
      },
    });
    const first = await c.stream.next(30_000);
    if (!first?.subscribed) throw new Error(`not subscribed: ${JSON.stringify(first)}`);
    return c;
  }

  private track(call: ClientDuplexStream<object, Msg>): Stream {
    const s = new Stream(call);
    this.streams.push(s);
    return s;
  }

  close(): void {
    for (const s of this.streams) s.close();
    this.producer.close();
    this.consumer.close();
    this.admin.close();
    this.lookup.close();
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Every value of the deliveries, flattened. */
export const valuesOf = (ds: Delivered[]): string[] => ds.flatMap((d) => d.values);

export interface StandaloneWireContext {
  dir: string;
  sa: SluiceProcess;
  wire: Wire;
}

/**
 * The test function of a feature suite that shares one standalone (data in a
 * temp dir named by `prefix`) and one Wire on it: started before the suite's
 * tests, killed and removed after them.
 */
export function useStandaloneWire(prefix: string): TestFn<StandaloneWireContext> {
  const test = anyTest as TestFn<StandaloneWireContext>;
  test.before(async (t) => {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    const sa = await startStandalone(dir);
    t.context = { dir, sa, wire: new Wire(sa.address) };
  });
  test.after.always(async (t) => {
    t.context.wire?.close();
    t.context.sa?.kill('SIGKILL');
    await t.context.sa?.exited;
    if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
  });
  return test;
}
