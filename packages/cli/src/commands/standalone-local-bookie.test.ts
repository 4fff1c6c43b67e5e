import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Bookie } from '@sluice/bookie';
import { crc32c, ResourceExhaustedError, silentLogger, UnavailableError } from '@sluice/common';
import {
  type BookieClient,
  type BookieDirectory,
  GrpcBookieClient,
  GrpcBookieClientPool,
  type WireEntry,
} from '@sluice/ledger';
import { EmbeddedMetadataStore } from '@sluice/metadata';
import test, { type ExecutionContext } from 'ava';
import { LocalBookieClient } from './standalone-local-bookie.js';

async function startBookie(t: ExecutionContext): Promise<Bookie> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-local-bookie-'));
  const metadata = await EmbeddedMetadataStore.open({ dataDir: join(dir, 'metadata') });
  const bookie = new Bookie({
    config: {
      metadata: `embedded://${join(dir, 'metadata')}`,
      dataDir: join(dir, 'bookie'),
      port: 0,
      httpPort: -1,
      bindHost: '127.0.0.1',
      advertiseAddress: '127.0.0.1:1',
    },
    metadataStore: metadata,
    logger: silentLogger,
  });
  t.teardown(async () => {
    await bookie.stop();
    await metadata.close();
    await rm(dir, { recursive: true, force: true });
  });
  await bookie.start();
  return bookie;
}

/** Entries 0..n-1 of a ledger, each with its CRC and running ledger length, as a writer sends them. */
function entries(ledgerId: number, n: number, size = 100): WireEntry[] {
  let length = 0;
  return Array.from({ length: n }, (_, entryId) => {
    const payload = Buffer.alloc(size, entryId + 1);
    length += size;
    return { ledgerId, entryId, lac: entryId - 1, payload, crc32c: crc32c(payload), ledgerLength: length };
  });
}

test('standalone local bookie - adds are durable and reads return them with lac and ledgerLength', async (t) => {
  const bookie = await startBookie(t);
  const local = new LocalBookieClient(bookie);
  t.is(local.bookieId, bookie.bookieId);
  const es = entries(7, 5);
  const outs = await Promise.all(es.map((e) => local.add(e)));
  t.deepEqual(
    outs.map((o) => o.status),
    ['OK', 'OK', 'OK', 'OK', 'OK'],
  );

  const one = await local.read(7, 2);
  t.is(one.status, 'OK');
  t.is(one.lac, 3);
  t.deepEqual(one.entry, es[2]);
  t.is(one.entry?.ledgerLength, 300);

  const last = await local.read(7, -1);
  t.is(last.entry?.entryId, 4);
  t.is(last.entry?.ledgerLength, 500);

  const range = await local.readRange(7, 1, 4);
  t.deepEqual(
    range.entries.map((e) => [e.entryId, e.ledgerLength]),
    [
      [1, 200],
      [2, 300],
      [3, 400],
      [4, 500],
    ],
  );
  t.is(range.stoppedBy, undefined);
  const past = await local.readRange(7, 3, 9);
  t.deepEqual(
    past.entries.map((e) => e.entryId),
    [3, 4],
  );
  t.is(past.stoppedBy, 'NO_ENTRY');

  t.deepEqual(await local.readLac(7), { status: 'OK', lac: 3, lastEntryId: 4 });
  t.deepEqual(await local.readLac(99), { status: 'NO_LEDGER', lac: -1, lastEntryId: -1 });
  t.is((await local.read(99, 0)).status, 'NO_LEDGER');
  t.is((await local.read(7, 8)).status, 'NO_ENTRY');

  const metrics = await bookie.registry.getSingleMetricAsString('sluice_bookie_adds_total');
  t.regex(metrics, /status="OK"} 5/);
});

test('standalone local bookie - a payload that fails its CRC is refused as INVALID and not stored', async (t) => {
  const bookie = await startBookie(t);
  const local = new LocalBookieClient(bookie);
  const [e] = entries(3, 1);
  if (!e) throw new Error('no entry');
  const out = await local.add({ ...e, crc32c: (e.crc32c + 1) >>> 0 });
  t.is(out.status, 'INVALID');
  t.regex(out.message ?? '', /CRC32C/);
  t.is((await local.read(3, 0)).status, 'NO_LEDGER');
  const bad = await local.add({ ...e, ledgerLength: 10 });
  t.is(bad.status, 'INVALID');
  t.regex(bad.message ?? '', /ledger length/);
});

test('standalone local bookie - a fence refuses normal adds, lets recovery adds through, and fencing reads fence', async (t) => {
  const bookie = await startBookie(t);
  const local = new LocalBookieClient(bookie);
  const es = entries(11, 4);
  for (const e of es.slice(0, 2)) t.is((await local.add(e)).status, 'OK');

  t.deepEqual(await local.fence(11), { status: 'OK', lac: 0, lastEntryId: 1 });
  const refused = await local.add(es[2] as WireEntry);
  t.is(refused.status, 'FENCED');
  t.regex(refused.message ?? '', /fenced/);
  t.is((await local.add(es[2] as WireEntry, true)).status, 'OK');
  t.is((await local.read(11, 2)).entry?.ledgerLength, 300);

  // A recovery read fences a ledger that was not fenced yet.
  for (const e of entries(12, 2)) t.is((await local.add(e)).status, 'OK');
  const read = await local.read(12, 1, true);
  t.is(read.status, 'OK');
  t.is((await local.add(entries(12, 3)[2] as WireEntry)).status, 'FENCED');
  // So does readLac with fence.
  t.is((await local.add(entries(13, 1)[0] as WireEntry)).status, 'OK');
  t.deepEqual(await local.readLac(13, true), { status: 'OK', lac: -1, lastEntryId: 0 });
  t.is((await local.add(entries(13, 2)[1] as WireEntry)).status, 'FENCED');
});

test('standalone local bookie - answers exactly as the bookie gRPC service does', async (t) => {
  const bookie = await startBookie(t);
  const local = new LocalBookieClient(bookie);
  const remote = new GrpcBookieClient(bookie.bookieId, `127.0.0.1:${bookie.port}`);
  t.teardown(() => remote.close());
  const run = async (c: BookieClient, ledgerId: number) => {
    const es = entries(ledgerId, 3);
    const adds = [];
    for (const e of es) adds.push(await c.add(e));
    adds.push(await c.add({ ...(es[0] as WireEntry), entryId: 5, crc32c: 1 }));
    const fence = await c.fence(ledgerId);
    adds.push(await c.add({ ...(es[0] as WireEntry), entryId: 3 }));
    adds.push(await c.add({ ...(es[0] as WireEntry), entryId: 3 }, true));
    const strip = <T extends { entry?: WireEntry }>(r: T) => ({
      ...r,
      entry: r.entry && { ...r.entry, ledgerId: 0 },
    });
    return {
      adds: adds.map((a) => ({
        status: a.status,
        message: (a.message ?? '').replaceAll(String(ledgerId), 'L'),
      })),
      fence,
      reads: [strip(await c.read(ledgerId, 1)), strip(await c.read(ledgerId, 9)), await c.read(4242, 0)].map(
        (r) => ({ ...r, message: (r.message ?? '').replaceAll(String(ledgerId), 'L') }),
      ),
      range: (await c.readRange(ledgerId, 0, 6)).entries.map((e) => [e.entryId, e.ledgerLength, e.crc32c]),
      stoppedBy: (await c.readRange(ledgerId, 0, 6)).stoppedBy,
      lac: await c.readLac(ledgerId),
    };
  };
  t.deepEqual(await run(local, 21), await run(remote, 22));
});

test('standalone local bookie - in-flight bytes are bounded and the waiting queue too', async (t) => {
  const bookie = await startBookie(t);
  const local = new LocalBookieClient(bookie, { maxInFlightBytes: 250, maxWaitingAdds: 3 });
  const es = entries(31, 8);
  // 100-byte entries: three go to the store (300 >= 250), three wait, the rest are refused.
  const pending = es.map((e) =>
    local.add(e).then(
      (o) => o.status,
      (err: Error) => err,
    ),
  );
  const results = await Promise.all(pending);
  t.deepEqual(results.slice(0, 6), ['OK', 'OK', 'OK', 'OK', 'OK', 'OK']);
  t.true(results[6] instanceof ResourceExhaustedError);
  t.true(results[7] instanceof ResourceExhaustedError);
  t.is((await local.readRange(31, 0, 5)).entries.length, 6);
});

test('standalone local bookie - the pool routes its id to the local client and closes it', async (t) => {
  const bookie = await startBookie(t);
  const local = new LocalBookieClient(bookie);
  const directory: BookieDirectory = { list: async () => [] } as unknown as BookieDirectory;
  const pool = new GrpcBookieClientPool(directory, { localClients: [local] });
  t.is(pool.get(bookie.bookieId), local);
  t.not(pool.get('someone-else'), local);
  await pool.close();
  await t.throwsAsync(local.add(entries(40, 1)[0] as WireEntry), { instanceOf: UnavailableError });
  await t.throwsAsync(local.read(40, 0), { instanceOf: UnavailableError });
});

test('standalone local bookie - a stopped bookie is unavailable, not a crash', async (t) => {
  const bookie = await startBookie(t);
  const local = new LocalBookieClient(bookie);
  await bookie.stop();
  await t.throwsAsync(local.add(entries(50, 1)[0] as WireEntry), { instanceOf: UnavailableError });
  await t.throwsAsync(local.readLac(50), { instanceOf: UnavailableError });
});
