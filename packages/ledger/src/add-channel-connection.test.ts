import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { status } from '@grpc/grpc-js';
import { crc32c, ResourceExhaustedError, type SluiceError, UnavailableError } from '@sluice/common';
import {
  ADD_CHANNEL_PREFACE,
  AddChannelFrame,
  AddChannelFrameReader,
  addChannelHeader,
  addChannelStatusFrame,
  decodeAddEntriesRequest,
  EncodedEntry,
  encodeAddEntriesResponse,
} from '@sluice/proto';
import test from 'ava';
import { AddChannelConnection } from './add-channel-connection.js';
import type { AddStreamHandlers } from './add-stream.js';
import { GrpcBookieClient } from './grpc-bookie-client.js';

type Behaviour = 'answer' | 'silent' | 'fail';

/** A scripted add channel: answers adds (and pings), says nothing, or fails the first request. */
async function fakeChannel(behaviour: Behaviour) {
  const received: { entryId: number; payload: Buffer }[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    const reader = new AddChannelFrameReader(64 << 20);
    let preface: Buffer | undefined = Buffer.alloc(0);
    s.on('data', (chunk: Buffer) => {
      let data = chunk;
      if (preface) {
        preface = Buffer.concat([preface, data]);
        if (preface.length < ADD_CHANNEL_PREFACE.length) return;
        if (!preface.subarray(0, ADD_CHANNEL_PREFACE.length).equals(ADD_CHANNEL_PREFACE)) s.destroy();
        data = preface.subarray(ADD_CHANNEL_PREFACE.length);
        preface = undefined;
      }
      for (const f of reader.push(data)) {
        if (behaviour === 'silent') continue;
        if (f.kind === AddChannelFrame.PING) {
          s.write(addChannelHeader(AddChannelFrame.PONG, 0));
          continue;
        }
        if (behaviour === 'fail') {
          s.end(addChannelStatusFrame(status.RESOURCE_EXHAUSTED, 'add request too large'));
          return;
        }
        const req = decodeAddEntriesRequest(Buffer.from(f.body));
        for (const e of req.entries) received.push({ entryId: e.entryId, payload: Buffer.from(e.payload) });
        const body = encodeAddEntriesResponse(
          req.entries.map((e) => ({ ledgerId: e.ledgerId, entryId: e.entryId, status: 'ENTRY_STATUS_OK' })),
        );
        s.write(Buffer.concat([addChannelHeader(AddChannelFrame.RESPONSE, body.length), body]));
      }
    });
    s.on('end', () => s.end(addChannelStatusFrame(status.OK, '')));
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    address,
    received,
    sockets,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function encoded(entryId: number, payload: Buffer): EncodedEntry {
  return new EncodedEntry(
    { ledgerId: 1, entryId, lac: -1, crc32c: crc32c(payload), ledgerLength: 0 },
    payload,
  );
}

function handlers() {
  const results: number[] = [];
  let resolveEnd!: (v: SluiceError | 'ended') => void;
  const over = new Promise<SluiceError | 'ended'>((resolve) => {
    resolveEnd = resolve;
  });
  const h: AddStreamHandlers = {
    response: (res) => {
      for (const r of res.results) results.push(r.entryId);
    },
    broken: (err) => resolveEnd(err),
    ended: () => resolveEnd('ended'),
  };
  return { h, results, over };
}

test('add channel connection - results come back and end() closes the stream with OK', async (t) => {
  const fake = await fakeChannel('answer');
  t.teardown(fake.close);
  const conn = new AddChannelConnection('b1', fake.address);
  const { h, results, over } = handlers();
  const stream = conn.open(h);
  const payloads = [Buffer.from('a'), Buffer.alloc(300_000, 7), Buffer.from('c')];
  stream.write({ entries: payloads.slice(0, 2).map((p, i) => encoded(i, p)), recovery: false });
  stream.write({ entries: [encoded(2, payloads[2]!)], recovery: false });
  stream.end();
  t.is(await over, 'ended');
  t.deepEqual(results, [0, 1, 2]);
  t.deepEqual(
    fake.received.map((r) => r.payload),
    payloads,
  );
});

test('add channel connection - a status from the bookie fails the stream with that error', async (t) => {
  const fake = await fakeChannel('fail');
  t.teardown(fake.close);
  const { h, over } = handlers();
  new AddChannelConnection('b1', fake.address)
    .open(h)
    .write({ entries: [encoded(0, Buffer.from('x'))], recovery: false });
  const err = await over;
  t.true(err instanceof ResourceExhaustedError);
  t.regex((err as Error).message, /too large/);
});

test('add channel connection - an idle bookie that stops answering pings is dropped', async (t) => {
  const fake = await fakeChannel('silent');
  t.teardown(fake.close);
  const { h, over } = handlers();
  const started = Date.now();
  new AddChannelConnection('b1', fake.address, { keepaliveMs: 100, keepaliveTimeoutMs: 200 }).open(h);
  const err = await over;
  t.true(err instanceof UnavailableError);
  t.regex((err as Error).message, /did not answer a ping/);
  // Within a few ping periods, not the add timeout of seconds.
  t.true(Date.now() - started < 3000);
});

test('add channel connection - with adds unanswered, pings are not the judge (the add timeout is)', async (t) => {
  const fake = await fakeChannel('silent');
  t.teardown(fake.close);
  const { h, over } = handlers();
  const stream = new AddChannelConnection('b1', fake.address, {
    keepaliveMs: 50,
    keepaliveTimeoutMs: 100,
  }).open(h);
  stream.write({ entries: [encoded(0, Buffer.from('x'))], recovery: false });
  const outcome = await Promise.race([over, new Promise((r) => setTimeout(() => r('still open'), 800))]);
  t.is(outcome, 'still open');
  stream.cancel();
});

test('add channel connection - an unreachable bookie breaks the stream', async (t) => {
  const fake = await fakeChannel('answer');
  const address = fake.address;
  await fake.close();
  const { h, over } = handlers();
  new AddChannelConnection('b1', address)
    .open(h)
    .write({ entries: [encoded(0, Buffer.from('x'))], recovery: false });
  const err = await over;
  t.true(err instanceof UnavailableError);
  t.regex((err as Error).message, /ECONNREFUSED/);
});

test('add channel connection - the bookie client sends adds over the channel when it has an add address', async (t) => {
  const fake = await fakeChannel('answer');
  t.teardown(fake.close);
  // The gRPC address is never dialled for adds.
  const client = new GrpcBookieClient('b1', '127.0.0.1:1', { addAddress: fake.address });
  t.teardown(() => client.close());
  const outcomes = await Promise.all(
    Array.from({ length: 50 }, (_, i) => {
      const payload = Buffer.from(`entry ${i}`);
      return client.add({
        ledgerId: 1,
        entryId: i,
        lac: -1,
        payload,
        crc32c: crc32c(payload),
        ledgerLength: 0,
      });
    }),
  );
  t.true(outcomes.every((o) => o.status === 'OK'));
  t.is(fake.received.length, 50);
});
