import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { status as grpcStatus } from '@grpc/grpc-js';
import { Bookie } from '@sluice/bookie';
import { crc32c } from '@sluice/common';
import {
  type BookieClient,
  GrpcBookieClientPool,
  MetadataBookieDirectory,
  type WireEntry,
} from '@sluice/ledger';
import { openMetadataStore } from '@sluice/metadata';
import {
  ADD_CHANNEL_PREFACE,
  AddChannelFrame,
  AddChannelFrameReader,
  addChannelHeader,
  decodeAddChannelStatus,
  decodeAddEntriesResponse,
  EncodedEntry,
  encodeAddEntriesRequest,
} from '@sluice/proto';
import test from 'ava';
import { testMetadataUrl } from '../support/bookie-process.js';

async function startBookie(
  t: { teardown: (fn: () => Promise<void>) => void },
  config: Record<string, unknown> = {},
) {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-add-channel-'));
  const metadata = testMetadataUrl('add-channel');
  const bookie = new Bookie({
    config: { metadata, dataDir: dir, port: 0, httpPort: -1, bindHost: '127.0.0.1', ...config },
  });
  await bookie.start();
  const store = await openMetadataStore(metadata);
  const pool = new GrpcBookieClientPool(new MetadataBookieDirectory(store, 0));
  t.teardown(async () => {
    await pool.close();
    await bookie.stop();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  await pool.refresh();
  return { bookie, store, client: pool.get(bookie.bookieId) };
}

function entry(ledgerId: number, entryId: number, payload: Buffer): WireEntry {
  return { ledgerId, entryId, lac: entryId - 1, payload, crc32c: crc32c(payload), ledgerLength: 0 };
}

async function readBack(
  t: { is: (a: unknown, b: unknown) => void; true: (v: boolean, m?: string) => void },
  client: BookieClient,
  sent: WireEntry[],
) {
  for (const e of sent) {
    const r = await client.read(e.ledgerId, e.entryId);
    t.is(r.status, 'OK');
    t.true(
      r.entry?.payload.equals(e.payload) ?? false,
      `entry ${e.ledgerId}:${e.entryId} reads back byte for byte`,
    );
  }
}

/** Frames the bookie sends on a raw add channel until it closes. */
function rawChannel(port: number, send: (write: (b: Buffer) => void) => void) {
  return new Promise<{ kind: number; body: Buffer }[]>((resolve, reject) => {
    const frames: { kind: number; body: Buffer }[] = [];
    const reader = new AddChannelFrameReader(1 << 20);
    const s = connect({ host: '127.0.0.1', port }, () => send((b) => s.write(b)));
    s.on('data', (d: Buffer) => frames.push(...reader.push(d)));
    s.on('error', reject);
    s.on('close', () => resolve(frames));
  });
}

const statusOf = (frames: { kind: number; body: Buffer }[]) => {
  const last = frames.at(-1);
  if (last?.kind !== AddChannelFrame.STATUS) return undefined;
  return decodeAddChannelStatus(last.body);
};

test('bookie add channel - the registration advertises it and adds over it read back byte for byte', async (t) => {
  const { bookie, store, client } = await startBookie(t);
  const reg = JSON.parse((await store.get(`bookies/available/${bookie.bookieId}`))!.value.toString()) as {
    addAddress?: string;
  };
  t.is(reg.addAddress, `${hostname()}:${bookie.addPort}`);
  t.true(bookie.addPort > 0);

  // ~20 MiB in sizes from 1 byte to 700 KiB, all in flight at once: requests
  // span the bookie's 4 MiB read slabs and slabs are reused as adds settle.
  const sent: WireEntry[] = [];
  let bytes = 0;
  for (let i = 0; bytes < 20 * 1024 * 1024; i++) {
    const size = i % 7 === 0 ? 700 * 1024 : 1 + ((i * 7919) % (64 * 1024));
    const e = entry(1, i, randomBytes(size));
    sent.push(e);
    bytes += size;
  }
  // One entry larger than a slab gets a buffer of its own.
  sent.push(entry(2, 0, randomBytes(5 * 1024 * 1024)));
  const outcomes = await Promise.all(sent.map((e) => client.add(e)));
  t.deepEqual(
    outcomes.filter((o) => o.status !== 'OK'),
    [],
  );
  await readBack(t, client, sent);

  // A second wave reuses the pooled slabs; the first wave's data stays intact.
  const more = Array.from({ length: 300 }, (_, i) => entry(3, i, randomBytes(16 * 1024)));
  t.deepEqual(
    (await Promise.all(more.map((e) => client.add(e)))).filter((o) => o.status !== 'OK'),
    [],
  );
  await readBack(t, client, [...sent.slice(0, 50), ...more]);
  const streams = await bookie.registry.getSingleMetric('sluice_bookie_add_streams_total')!.get();
  t.deepEqual(
    streams.values.filter((v) => v.value > 0).map((v) => v.labels.transport),
    ['channel'],
  );
});

test('bookie add channel - bad input gets a clear status and the bookie lives on', async (t) => {
  const { bookie, client } = await startBookie(t, { maxEntryBytes: 64 * 1024 });
  const port = bookie.addPort;

  const noPreface = await rawChannel(port, (w) => w(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')));
  t.is(statusOf(noPreface)?.code, grpcStatus.INVALID_ARGUMENT);
  t.regex(statusOf(noPreface)!.message, /preface/);

  const huge = await rawChannel(port, (w) => {
    w(ADD_CHANNEL_PREFACE);
    w(addChannelHeader(AddChannelFrame.REQUEST, 0xfffffff0));
  });
  t.is(statusOf(huge)?.code, grpcStatus.RESOURCE_EXHAUSTED);

  const garbage = await rawChannel(port, (w) => {
    w(ADD_CHANNEL_PREFACE);
    w(addChannelHeader(AddChannelFrame.REQUEST, 3));
    w(Buffer.from([0x0a, 0xff, 0xff]));
  });
  t.is(statusOf(garbage)?.code, grpcStatus.INVALID_ARGUMENT);

  const unknownKind = await rawChannel(port, (w) => {
    w(ADD_CHANNEL_PREFACE);
    w(addChannelHeader(9, 0));
  });
  t.is(statusOf(unknownKind)?.code, grpcStatus.INVALID_ARGUMENT);

  // Per-entry problems are per-entry results; the stream goes on and ends with OK.
  const good = entry(7, 0, Buffer.from('fine'));
  const bad = [{ ...entry(7, 1, Buffer.from('x')), crc32c: 42 }, entry(7, 2, Buffer.alloc(65 * 1024))];
  const body = encodeAddEntriesRequest(
    [good, ...bad].map((e) => new EncodedEntry(e, e.payload)),
    false,
  );
  const results = await new Promise<{ status: string; message: string; entryId: number }[]>(
    (resolve, reject) => {
      const reader = new AddChannelFrameReader(1 << 20);
      const got: { status: string; message: string; entryId: number }[] = [];
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.write(ADD_CHANNEL_PREFACE);
        s.write(addChannelHeader(AddChannelFrame.PING, 0));
        s.write(Buffer.concat([addChannelHeader(AddChannelFrame.REQUEST, body.length), body]));
        s.end();
      });
      let pong = false;
      let st: { code: number } | undefined;
      s.on('data', (d: Buffer) => {
        for (const f of reader.push(d)) {
          if (f.kind === AddChannelFrame.PONG) pong = true;
          else if (f.kind === AddChannelFrame.RESPONSE) got.push(...decodeAddEntriesResponse(f.body).results);
          else if (f.kind === AddChannelFrame.STATUS) st = decodeAddChannelStatus(f.body);
        }
      });
      s.on('error', reject);
      s.on('close', () => {
        if (!pong) reject(new Error('no pong'));
        else if (st?.code !== grpcStatus.OK) reject(new Error(`status ${JSON.stringify(st)}`));
        else resolve(got);
      });
    },
  );
  const byId = new Map(results.map((r) => [r.entryId, r]));
  t.is(byId.get(0)?.status, 'ENTRY_STATUS_OK');
  t.is(byId.get(1)?.status, 'ENTRY_STATUS_INVALID');
  t.regex(byId.get(1)!.message, /CRC32C/);
  t.is(byId.get(2)?.status, 'ENTRY_STATUS_INVALID');
  t.regex(byId.get(2)!.message, /max entry size/);

  // The bookie still takes adds from a real client.
  t.is((await client.add(entry(8, 0, Buffer.from('after')))).status, 'OK');
  t.is((await client.read(7, 0)).entry?.payload.toString(), 'fine');
});

test('bookie add channel - off with --add-port -1: no address advertised, adds go over gRPC', async (t) => {
  const { bookie, store, client } = await startBookie(t, { addPort: -1 });
  t.is(bookie.addPort, -1);
  const reg = JSON.parse((await store.get(`bookies/available/${bookie.bookieId}`))!.value.toString()) as {
    addAddress?: string;
  };
  t.is(reg.addAddress, undefined);
  const e = entry(4, 0, randomBytes(1000));
  t.is((await client.add(e)).status, 'OK');
  t.true((await client.read(4, 0)).entry?.payload.equals(e.payload));
  const streams = await bookie.registry.getSingleMetric('sluice_bookie_add_streams_total')!.get();
  t.deepEqual(
    streams.values.filter((v) => v.value > 0).map((v) => v.labels.transport),
    ['grpc'],
  );
});
