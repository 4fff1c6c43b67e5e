import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type ClientDuplexStream,
  credentials,
  type ServiceClientConstructor,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import { loadProto, MAX_GRPC_MESSAGE_BYTES } from '@sluice/proto';
import anyTest, { type TestFn } from 'ava';
import { type SluiceProcess, startStandalone } from '../support/cluster.js';

const test = anyTest as TestFn<{ dir: string; sa: SluiceProcess; services: Services }>;

interface Services {
  lookup: { Lookup(req: object, cb: (err: ServiceError | null, res: unknown) => void): void; close(): void };
  producer: { Produce(): ClientDuplexStream<object, Record<string, unknown>>; close(): void };
  consumer: { Consume(): ClientDuplexStream<object, Record<string, unknown>>; close(): void };
}

test.before(async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-bad-input-'));
  const sa = await startStandalone(dir);
  const pkg = loadProto('broker.proto') as unknown as {
    sluice: { v1: Record<string, ServiceClientConstructor> };
  };
  const opts = {
    'grpc.max_send_message_length': MAX_GRPC_MESSAGE_BYTES,
    'grpc.max_receive_message_length': MAX_GRPC_MESSAGE_BYTES,
  };
  const make = (name: string) =>
    new pkg.sluice.v1[name]!(sa.address, credentials.createInsecure(), opts) as never;
  t.context = {
    dir,
    sa,
    services: {
      lookup: make('LookupService'),
      producer: make('ProducerService'),
      consumer: make('ConsumerService'),
    },
  };
});

test.after.always(async (t) => {
  for (const s of Object.values(t.context.services ?? {})) s.close();
  t.context.sa?.kill('SIGKILL');
  await t.context.sa?.exited;
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

function lookup(s: Services, topic: string): Promise<unknown> {
  return new Promise((resolve, reject) =>
    s.lookup.Lookup({ topic }, (err, res) => (err ? reject(err) : resolve(res))),
  );
}

/** A bidi stream with a queue of responses and the final status. */
function open<T extends Record<string, unknown>>(stream: ClientDuplexStream<object, T>) {
  const queue: T[] = [];
  let waiter: (() => void) | undefined;
  let ended: ServiceError | null | undefined;
  stream.on('data', (d: T) => {
    queue.push(d);
    waiter?.();
  });
  stream.on('error', (e: ServiceError) => {
    ended = e;
    waiter?.();
  });
  stream.on('end', () => {
    ended ??= null;
    waiter?.();
  });
  return {
    write: (m: object) => stream.write(m),
    async next(): Promise<T> {
      for (;;) {
        const d = queue.shift();
        if (d) return d;
        if (ended !== undefined) throw ended ?? new Error('stream ended');
        await new Promise<void>((r) => {
          waiter = r;
          setTimeout(r, 10_000);
        });
      }
    },
    async status(): Promise<ServiceError | null> {
      while (ended === undefined) await new Promise<void>((r) => (waiter = r));
      return ended;
    },
    end: () => stream.end(),
  };
}

const batch = (seq: number, payload: Buffer, count = 1) => ({
  header: { count, firstSequenceId: seq },
  payload,
});

test('bad input - invalid topic names and unknown namespaces are refused with clear statuses', async (t) => {
  const s = t.context.services;
  const bad = await t.throwsAsync(lookup(s, 'a//b'));
  t.is((bad as ServiceError).code, status.INVALID_ARGUMENT);
  t.regex((bad as ServiceError).details, /tenant|namespace|empty/);
  const scheme = await t.throwsAsync(lookup(s, 'kafka://x/y/z'));
  t.is((scheme as ServiceError).code, status.INVALID_ARGUMENT);
  const tenant = await t.throwsAsync(lookup(s, 'persistent://nope/default/t'));
  t.is((tenant as ServiceError).code, status.NOT_FOUND);
  t.regex((tenant as ServiceError).details, /tenant 'nope' does not exist/);
  const ns = await t.throwsAsync(lookup(s, 'persistent://public/nope/t'));
  t.is((ns as ServiceError).code, status.NOT_FOUND);
  t.regex((ns as ServiceError).details, /namespace 'public\/nope' does not exist/);
  t.truthy(await lookup(s, 'persistent://public/default/fine'));
});

test('bad input - a malformed first message ends only that stream', async (t) => {
  const s = t.context.services;
  const p = open(s.producer.Produce());
  p.write({ send: { batch: batch(0, Buffer.from('x')) } });
  const st = await p.status();
  t.is(st?.code, status.INVALID_ARGUMENT);
  t.regex(st?.details ?? '', /first message .* must be 'open'/);
  const c = open(s.consumer.Consume());
  c.write({ flow: { permits: 10 } });
  t.is((await c.status())?.code, status.INVALID_ARGUMENT);
  const c2 = open(s.consumer.Consume());
  c2.write({ subscribe: { topic: 'bad-type', subscription: 's', type: 42 } });
  const st2 = await c2.status();
  t.is(st2?.code, status.INVALID_ARGUMENT);
  t.regex(st2?.details ?? '', /subscription type '42' is unknown/);
  const p2 = open(s.producer.Produce());
  p2.write({ open: { topic: 'bad//topic' } });
  t.is((await p2.status())?.code, status.INVALID_ARGUMENT);
});

test('bad input - an oversized batch is refused and the producer stream keeps working', async (t) => {
  const s = t.context.services;
  const p = open(s.producer.Produce());
  p.write({ open: { topic: 'oversize', producerName: 'big' } });
  const opened = (await p.next()).opened as { maxMessageSize: number; lastSequenceId: number };
  t.is(opened.maxMessageSize, 5 * 1024 * 1024);
  t.is(Number(opened.lastSequenceId), -1);
  p.write({ send: { batch: batch(0, Buffer.alloc(6 * 1024 * 1024)) } });
  p.write({ send: { batch: batch(1, Buffer.from('ok')) } });
  p.write({ send: { batch: batch(1, Buffer.from('ok')) } });
  const refused = (await p.next()).error as { sequenceId: number; code: number; message: string };
  t.is(Number(refused.sequenceId), 0);
  t.is(refused.code, status.INVALID_ARGUMENT);
  t.regex(refused.message, /exceeds the max message size of 5242880 bytes/);
  const ok = (await p.next()).receipt as {
    sequenceId: number;
    duplicate: boolean;
    messageId: { entryId: number };
  };
  t.is(Number(ok.sequenceId), 1);
  t.false(ok.duplicate);
  const dup = (await p.next()).receipt as { duplicate: boolean; messageId: { entryId: number } };
  t.true(dup.duplicate, 'a resend of sequence id 1 is acknowledged as a duplicate');
  t.deepEqual(dup.messageId, ok.messageId);
  p.end();
  t.is(await p.status(), null);
});

test('bad input - bad flow permits and acks of never-delivered ids are reported while the consumer keeps going', async (t) => {
  const s = t.context.services;
  const p = open(s.producer.Produce());
  p.write({ open: { topic: 'consume-bad' } });
  await p.next();
  const c = open(s.consumer.Consume());
  c.write({
    subscribe: { topic: 'consume-bad', subscription: 's', initialPosition: 'INITIAL_POSITION_EARLIEST' },
  });
  t.truthy((await c.next()).subscribed);
  c.write({ flow: { permits: 0 } });
  const e1 = (await c.next()).error as { code: number; message: string };
  t.is(e1.code, status.INVALID_ARGUMENT);
  t.regex(e1.message, /permits must be a positive integer/);
  c.write({ ack: { messageIds: [{ ledgerId: 999, entryId: 5, batchIndex: 0 }] } });
  const e2 = (await c.next()).error as { code: number; message: string };
  t.is(e2.code, status.NOT_FOUND);
  t.regex(e2.message, /999:5:0 .*not delivered/);
  c.write({ flow: { permits: 10 } });
  p.write({ send: { batch: batch(0, Buffer.from('payload')) } });
  t.truthy((await p.next()).receipt);
  const d = (await c.next()).deliveries as {
    deliveries: { messageId: object; batch: { payload: Buffer } }[];
  };
  t.is(d.deliveries[0]!.batch.payload.toString(), 'payload');
  c.write({ ack: { messageIds: [d.deliveries[0]!.messageId] } });
  c.end();
  p.end();
  t.is(await c.status(), null);
});
