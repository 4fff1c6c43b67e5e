import { Server, ServerCredentials, type ServerDuplexStream, type ServiceDefinition } from '@grpc/grpc-js';
import { crc32c, TimeoutError, UnavailableError } from '@sluice/common';
import type { AddEntriesRequest__Output, AddEntriesResponse, Entry__Output } from '@sluice/proto';
import { loadProto } from '@sluice/proto';
import test from 'ava';
import type { WireEntry } from './bookie-client.js';
import { GrpcBookieClient } from './grpc-bookie-client.js';

/** A scripted BookieService: answers each request's adds in reverse order, or stalls. */
async function fakeBookie(opts: { stall?: boolean } = {}) {
  const state = { stall: opts.stall ?? false };
  const requests: AddEntriesRequest__Output[] = [];
  const stored = new Map<string, Entry__Output>();
  const streams = new Set<ServerDuplexStream<AddEntriesRequest__Output, AddEntriesResponse>>();
  const pkg = loadProto('bookie.proto') as unknown as {
    sluice: { v1: { BookieService: { service: ServiceDefinition } } };
  };
  const server = new Server();
  server.addService(pkg.sluice.v1.BookieService.service, {
    AddEntries(call: ServerDuplexStream<AddEntriesRequest__Output, AddEntriesResponse>) {
      streams.add(call);
      call.on('error', () => {});
      call.on('data', (req: AddEntriesRequest__Output) => {
        requests.push(req);
        if (state.stall) return;
        for (const e of req.entries) stored.set(`${e.ledgerId}:${e.entryId}`, e);
        const results = req.entries
          .map((e) => ({
            ledgerId: e.ledgerId,
            entryId: e.entryId,
            status: 'ENTRY_STATUS_OK' as const,
            message: '',
          }))
          .reverse();
        setImmediate(() => call.write({ results }));
      });
      call.on('end', () => call.end());
    },
    ReadEntry(
      call: { request: { ledgerId: number; entryId: number } },
      cb: (err: null, res: object) => void,
    ) {
      const e = stored.get(`${call.request.ledgerId}:${call.request.entryId}`);
      cb(
        null,
        e
          ? { status: 'ENTRY_STATUS_OK', entry: e, lac: e.lac }
          : { status: 'ENTRY_STATUS_NO_ENTRY', lac: -1 },
      );
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return {
    address: `127.0.0.1:${port}`,
    requests,
    state,
    breakStreams: () => {
      for (const s of streams) s.end();
      streams.clear();
    },
    stop: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
    kill: () => server.forceShutdown(),
  };
}

const entry = (entryId: number, size = 100): WireEntry => {
  const payload = Buffer.alloc(size, entryId % 251);
  return {
    ledgerId: 7,
    entryId,
    lac: entryId - 1,
    payload,
    crc32c: crc32c(payload),
    ledgerLength: (entryId + 1) * size,
  };
};

test('grpc bookie client - adds of one tick share a request and results match out of order', async (t) => {
  const bookie = await fakeBookie();
  const client = new GrpcBookieClient('b1', bookie.address);
  t.teardown(async () => {
    await client.close();
    await bookie.stop();
  });
  const outcomes = await Promise.all(Array.from({ length: 20 }, (_, i) => client.add(entry(i))));
  t.true(outcomes.every((o) => o.status === 'OK'));
  t.is(bookie.requests.length, 1, 'one request carried all 20 adds');
  const r = await client.read(7, 3);
  t.is(r.status, 'OK');
  t.deepEqual(r.entry?.payload, entry(3).payload);
  t.is(r.entry?.ledgerLength, 400);
  t.is((await client.read(7, 99)).status, 'NO_ENTRY');
});

test('grpc bookie client - requests stay under the batch size limit', async (t) => {
  const bookie = await fakeBookie();
  const client = new GrpcBookieClient('b1', bookie.address);
  t.teardown(async () => {
    await client.close();
    await bookie.stop();
  });
  await Promise.all(Array.from({ length: 24 }, (_, i) => client.add(entry(i, 128 * 1024))));
  t.true(bookie.requests.length >= 3);
  for (const req of bookie.requests) {
    t.true(req.entries.reduce((n, e) => n + e.payload.length, 0) <= 1024 * 1024);
  }
});

test('grpc bookie client - a broken stream fails the adds in flight and the next add reconnects', async (t) => {
  const bookie = await fakeBookie({ stall: true });
  const client = new GrpcBookieClient('b1', bookie.address);
  t.teardown(async () => {
    await client.close();
    await bookie.stop();
  });
  const pending = client.add(entry(0));
  while (bookie.requests.length === 0) await new Promise((r) => setTimeout(r, 10));
  bookie.breakStreams();
  await t.throwsAsync(pending, { instanceOf: UnavailableError });
  bookie.state.stall = false;
  t.is((await client.add(entry(1))).status, 'OK');
});

test('grpc bookie client - an add that gets no answer times out the stream', async (t) => {
  const bookie = await fakeBookie({ stall: true });
  const client = new GrpcBookieClient('b1', bookie.address, { addTimeoutMs: 200 });
  t.teardown(async () => {
    await client.close();
    bookie.kill();
  });
  const started = Date.now();
  await t.throwsAsync(client.add(entry(0)), { instanceOf: TimeoutError });
  t.true(Date.now() - started < 2000);
});

test('grpc bookie client - an unreachable bookie fails fast', async (t) => {
  const bookie = await fakeBookie();
  const address = bookie.address;
  await bookie.stop();
  const client = new GrpcBookieClient('b1', address, { readTimeoutMs: 1000 });
  t.teardown(() => client.close());
  await t.throwsAsync(client.add(entry(0)));
  await t.throwsAsync(client.read(7, 0));
});
