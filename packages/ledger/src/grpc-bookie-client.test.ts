import { type AddressInfo, createServer, type Socket } from 'node:net';
import {
  Metadata,
  Server,
  ServerCredentials,
  type ServerDuplexStream,
  type ServerWritableStream,
  type ServiceDefinition,
  status,
} from '@grpc/grpc-js';
import { crc32c, ResourceExhaustedError, TimeoutError, UnavailableError } from '@sluice/common';
import type {
  AddEntriesRequest__Output,
  AddEntriesResponse,
  Entry__Output,
  ReadEntriesRequest__Output,
  ReadEntriesResponse,
} from '@sluice/proto';
import { EncodedEntry, loadProto } from '@sluice/proto';
import test from 'ava';
import type { WireEntry } from './bookie-client.js';
import { GrpcBookieClient } from './grpc-bookie-client.js';
import { AddStreamConnection } from './http2-add-stream.js';

/** A scripted BookieService: answers each request's adds in reverse order, or stalls, or stops reading. */
async function fakeBookie(opts: { stall?: boolean; paused?: boolean; failWith?: object } = {}) {
  const state = { stall: opts.stall ?? false, paused: opts.paused ?? false };
  const stalled: (() => void)[] = [];
  const counts = { opened: 0 };
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
      counts.opened++;
      call.on('error', () => {});
      if (state.paused) call.pause();
      call.on('data', (req: AddEntriesRequest__Output) => {
        requests.push(req);
        if (opts.failWith) {
          // How a grpc-js server ends a streaming call with a status.
          call.emit('error', opts.failWith);
          return;
        }
        const answer = () => {
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
        };
        if (state.stall) stalled.push(answer);
        else answer();
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
    /** Two entries per response (protobufjs-encoded), stopping with NO_ENTRY at the first missing one. */
    ReadEntries(call: ServerWritableStream<ReadEntriesRequest__Output, ReadEntriesResponse>) {
      const { ledgerId, firstEntryId, lastEntryId } = call.request;
      let chunk: Entry__Output[] = [];
      for (let id = firstEntryId; id <= lastEntryId; id++) {
        const e = stored.get(`${ledgerId}:${id}`);
        if (!e) {
          call.write({ entries: chunk, stoppedBy: 'ENTRY_STATUS_NO_ENTRY', stoppedAt: id });
          call.end();
          return;
        }
        chunk.push(e);
        if (chunk.length === 2) {
          call.write({ entries: chunk });
          chunk = [];
        }
      }
      if (chunk.length > 0) call.write({ entries: chunk });
      call.end();
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
    counts,
    /** Answer the stalled requests and every later one. */
    release: () => {
      state.stall = false;
      for (const a of stalled.splice(0)) a();
    },
    resumeReading: () => {
      state.paused = false;
      for (const s of streams) s.resume();
    },
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

test('grpc bookie client - range reads decode every chunk and report where the range stopped', async (t) => {
  const bookie = await fakeBookie();
  const client = new GrpcBookieClient('b1', bookie.address);
  t.teardown(async () => {
    await client.close();
    await bookie.stop();
  });
  await Promise.all(Array.from({ length: 5 }, (_, i) => client.add(entry(i, 1000 + i))));
  const whole = await client.readRange(7, 0, 4);
  t.is(whole.stoppedBy, undefined);
  t.deepEqual(
    whole.entries,
    [0, 1, 2, 3, 4].map((i) => entry(i, 1000 + i)),
  );
  const cut = await client.readRange(7, 1, 9);
  t.is(cut.stoppedBy, 'NO_ENTRY');
  t.deepEqual(
    cut.entries.map((e) => e.entryId),
    [1, 2, 3, 4],
  );
  const none = await client.readRange(8, 0, 3);
  t.deepEqual(none, { entries: [], stoppedBy: 'NO_ENTRY' });
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

test('grpc bookie client - bytes awaiting an answer stay within the byte budget', async (t) => {
  const bookie = await fakeBookie({ stall: true });
  const client = new GrpcBookieClient('b1', bookie.address, { maxInFlightBytes: 300 * 1024 });
  t.teardown(async () => {
    await client.close();
    await bookie.stop();
  });
  const adds = Array.from({ length: 10 }, (_, i) => client.add(entry(i, 128 * 1024)));
  while (bookie.requests.length === 0) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 100));
  const sent = bookie.requests.flatMap((r) => r.entries);
  t.is(sent.length, 2, 'two 128 KiB adds fit a 300 KiB budget, the third waits');
  bookie.release();
  const outcomes = await Promise.all(adds);
  t.true(outcomes.every((o) => o.status === 'OK'));
  t.deepEqual(
    bookie.requests.flatMap((r) => r.entries.map((e) => Number(e.entryId))),
    Array.from({ length: 10 }, (_, i) => i),
    'queued adds went out in order',
  );
});

test('grpc bookie client - adds past the queue bound fail with ResourceExhaustedError', async (t) => {
  const bookie = await fakeBookie({ stall: true });
  const client = new GrpcBookieClient('b1', bookie.address, { maxInFlightBytes: 1024 });
  t.teardown(async () => {
    await client.close();
    await bookie.stop();
  });
  // One add fills the budget; four budgets' worth may wait.
  const accepted = Array.from({ length: 5 }, (_, i) => client.add(entry(i, 1024)));
  await t.throwsAsync(client.add(entry(5, 1024)), { instanceOf: ResourceExhaustedError });
  bookie.release();
  t.true((await Promise.all(accepted)).every((o) => o.status === 'OK'));
});

test('grpc bookie client - a bookie that stops reading holds requests back in the client', async (t) => {
  const bookie = await fakeBookie({ paused: true });
  const client = new GrpcBookieClient('b1', bookie.address);
  t.teardown(async () => {
    await client.close();
    await bookie.stop();
  });
  // 600 KiB adds travel one per request: 30 requests, 18 MiB, against a stream that stops at its high-water mark.
  const adds = Array.from({ length: 30 }, (_, i) => client.add(entry(i, 600 * 1024)));
  const internals = client as unknown as {
    stream?: { stream: { writableLength: number; writableHighWaterMark: number } };
    batch: unknown[];
  };
  const deadline = Date.now() + 5000;
  while (bookie.counts.opened === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 200));
  t.truthy(internals.stream);
  // Writing stops once the stream is over its mark: at most one request past it is buffered.
  const { writableLength, writableHighWaterMark } = internals.stream!.stream;
  t.true(
    writableLength <= writableHighWaterMark + 600 * 1024 + 1024,
    `stream buffers ${writableLength} bytes`,
  );
  t.true(internals.batch.length > 0, 'the rest waits unsent in the client');
  bookie.resumeReading();
  t.true((await Promise.all(adds)).every((o) => o.status === 'OK'));
  t.is(bookie.requests.length, 30);
});

test('grpc bookie client - adds failed before their flush open no stream', async (t) => {
  const bookie = await fakeBookie();
  const client = new GrpcBookieClient('b1', bookie.address);
  t.teardown(async () => {
    await client.close();
    await bookie.stop();
  });
  const internals = client as unknown as { failAll(err: Error): void; stream?: unknown };
  const pending = client.add(entry(0));
  // The stream broke (or timed out) in the same tick: the flush that follows has nothing to send.
  internals.failAll(new UnavailableError('add stream to bookie b1 closed'));
  await t.throwsAsync(pending, { instanceOf: UnavailableError });
  await new Promise((r) => setTimeout(r, 50));
  t.is(internals.stream, undefined);
  t.is(bookie.counts.opened, 0);
  t.is((await client.add(entry(1))).status, 'OK');
  t.is(bookie.counts.opened, 1);
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

test('grpc bookie client - a call the bookie ends with a status fails its adds with that status', async (t) => {
  const metadata = new Metadata();
  const bookie = await fakeBookie({
    failWith: { code: status.RESOURCE_EXHAUSTED, details: 'disk 97% full: read-only (ä)', metadata },
  });
  const client = new GrpcBookieClient('b1', bookie.address);
  t.teardown(async () => {
    await client.close();
    await bookie.stop();
  });
  const err = await t.throwsAsync(client.add(entry(0)), { instanceOf: ResourceExhaustedError });
  t.is(err.message, 'disk 97% full: read-only (ä)');
  // The stream is gone; the next add opens a new one (which fails the same way here).
  await t.throwsAsync(client.add(entry(1)), { instanceOf: ResourceExhaustedError });
  t.is(bookie.counts.opened, 2);
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

/** A TCP server that accepts connections and never answers: a bookie host gone without a reset. */
async function blackHole() {
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server = createServer((s) => {
    accepted++;
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    accepted: () => accepted,
    stop: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

test('grpc bookie client - a connection that stops answering is found by its pings and replaced', async (t) => {
  const hole = await blackHole();
  const client = new GrpcBookieClient('b1', hole.address, { keepaliveMs: 100, keepaliveTimeoutMs: 100 });
  t.teardown(async () => {
    await client.close();
    await hole.stop();
  });
  const started = Date.now();
  // The add timeout (10 s) is far off: the unanswered ping ends it.
  await t.throwsAsync(client.add(entry(0)), { instanceOf: UnavailableError });
  t.true(Date.now() - started < 3000, `failed after ${Date.now() - started} ms`);
  await t.throwsAsync(client.add(entry(1)), { instanceOf: UnavailableError });
  t.is(hole.accepted(), 2, 'the second add connected again');
});

test('grpc bookie client - an add timeout drops the connection, so the next add connects again', async (t) => {
  const hole = await blackHole();
  const client = new GrpcBookieClient('b1', hole.address, { addTimeoutMs: 200, keepaliveMs: 60_000 });
  t.teardown(async () => {
    await client.close();
    await hole.stop();
  });
  await t.throwsAsync(client.add(entry(0)), { instanceOf: TimeoutError });
  t.is(hole.accepted(), 1);
  await t.throwsAsync(client.add(entry(1)), { instanceOf: TimeoutError });
  t.is(hole.accepted(), 2);
});

test('grpc bookie client - a burst of 16 MiB written before the connection is up is delivered whole', async (t) => {
  const bookie = await fakeBookie();
  const connection = new AddStreamConnection('b1', bookie.address);
  t.teardown(async () => {
    connection.close();
    await bookie.stop();
  });
  const payload = Buffer.alloc(1024, 7);
  const total = 16 * 1024;
  let acked = 0;
  const outcome = await new Promise<string>((resolve) => {
    const stream = connection.open({
      response: (res) => {
        acked += res.results.length;
        if (acked === total) stream.end();
      },
      broken: (err) => resolve(err.message),
      ended: () => resolve('ended'),
    });
    // No waiting for 'drain': everything is queued at once, as a writer with a large window would after a stall.
    for (let id = 0; id < total; id += 256) {
      const entries = Array.from(
        { length: 256 },
        (_, i) =>
          new EncodedEntry(
            { ledgerId: 5, entryId: id + i, lac: -1, crc32c: crc32c(payload), ledgerLength: 0 },
            payload,
          ),
      );
      stream.write({ entries, recovery: false });
    }
  });
  t.is(outcome, 'ended');
  t.is(acked, total);
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

test.serial(
  'grpc bookie client - one entry object sent to three bookies arrives whole without its parts being joined',
  async (t) => {
    const bookies = await Promise.all([fakeBookie(), fakeBookie(), fakeBookie()]);
    const clients = bookies.map((b, i) => new GrpcBookieClient(`b${i}`, b.address));
    t.teardown(async () => {
      await Promise.all(clients.map((c) => c.close()));
      await Promise.all(bookies.map((b) => b.stop()));
    });
    const parts = [Buffer.from('envelope-header|'), Buffer.alloc(2000, 0x5a)];
    const whole = Buffer.concat(parts);
    // What the ledger writer hands its write set: the payload in parts, joined only on demand.
    const parted = Array.from({ length: 5 }, (_, entryId) => ({
      ledgerId: 9,
      entryId,
      lac: entryId - 1,
      crc32c: crc32c(whole),
      ledgerLength: (entryId + 1) * whole.length,
      payloadParts: parts,
      payloadLength: whole.length,
      get payload(): Buffer {
        throw new Error('a gRPC client must not join the parts');
      },
    }));
    const outcomes = await Promise.all(clients.flatMap((c) => parted.map((e) => c.add(e))));
    t.true(outcomes.every((o) => o.status === 'OK'));
    for (const b of bookies) {
      t.is(b.requests.length, 1);
      t.deepEqual(
        b.requests[0]!.entries.map((e) => [Number(e.entryId), Buffer.from(e.payload).equals(whole)]),
        parted.map((e) => [e.entryId, true]),
      );
    }
  },
);
