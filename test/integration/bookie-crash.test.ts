import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AddChannelConnection } from '@sluice/ledger';
import { openMetadataStore } from '@sluice/metadata';
import {
  type AddEntriesResponse__Output,
  type BookieServiceClient,
  EncodedEntry,
  type ReadEntriesResponse__Output,
} from '@sluice/proto';
import test, { type ExecutionContext } from 'ava';
import {
  addAll,
  BookieProcess,
  bookieClient,
  bookieMetric,
  bookiePorts,
  readEntry,
  testEntry,
  testMetadataUrl,
  unary,
} from '../support/bookie-process.js';

async function tempDir(t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-bookie-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Stream adds with a bounded window until the stream breaks; returns the acknowledged entry ids. */
function addUntilBroken(client: BookieServiceClient, ledgerId: number, size: number): Promise<Set<number>> {
  return new Promise((resolve) => {
    const acked = new Set<number>();
    const call = client.addEntries();
    let next = 0;
    let inFlight = 0;
    let done = false;
    const pump = () => {
      while (!done && inFlight < 256) {
        const entries = Array.from({ length: 8 }, () => testEntry(ledgerId, next++, size));
        inFlight += entries.length;
        call.write({ entries, recovery: false });
      }
    };
    call.on('data', (res: AddEntriesResponse__Output) => {
      for (const r of res.results) {
        inFlight--;
        if (r.status === 'ENTRY_STATUS_OK') acked.add(r.entryId);
      }
      pump();
    });
    const finish = () => {
      done = true;
      resolve(acked);
    };
    call.on('error', finish);
    call.on('end', finish);
    pump();
  });
}

/** The same over the bookie's add channel (how brokers send adds). */
function addUntilBrokenOnChannel(address: string, ledgerId: number, size: number): Promise<Set<number>> {
  return new Promise((resolve) => {
    const acked = new Set<number>();
    let next = 0;
    let inFlight = 0;
    let done = false;
    const finish = () => {
      done = true;
      resolve(acked);
    };
    const stream = new AddChannelConnection('b1', address).open({
      response: (res) => {
        for (const r of res.results) {
          inFlight--;
          if (r.status === 'ENTRY_STATUS_OK') acked.add(r.entryId);
        }
        pump();
      },
      broken: finish,
      ended: finish,
    });
    const pump = () => {
      while (!done && inFlight < 256) {
        const entries = Array.from({ length: 8 }, () => {
          const e = testEntry(ledgerId, next++, size);
          return new EncodedEntry({ ...e, ledgerLength: 0 }, e.payload);
        });
        inFlight += entries.length;
        stream.write({ entries, recovery: false });
      }
    };
    pump();
  });
}

/** Kill `bookie` once `adding` has run long enough; start it again on the same dir. */
async function killAndRestart(
  t: { teardown: (fn: () => unknown) => void },
  bookie: BookieProcess,
  adding: Promise<Set<number>>,
  restart: () => Promise<BookieProcess>,
): Promise<{ acked: Set<number>; client: BookieServiceClient }> {
  bookie.kill('SIGKILL');
  const acked = await adding;
  await bookie.exited;
  const b2 = await restart();
  t.teardown(() => b2.stop());
  const client = bookieClient(b2.address);
  t.teardown(() => client.close());
  return { acked, client };
}

/** Acknowledged entries of `ledgerId` that do not read back byte for byte. */
async function mismatches(client: BookieServiceClient, ledgerId: number, acked: Set<number>, size: number) {
  let bad = 0;
  for (const id of acked) {
    const r = await readEntry(client, ledgerId, id);
    if (r.status !== 'ENTRY_STATUS_OK' || !r.entry?.payload.equals(testEntry(ledgerId, id, size).payload))
      bad++;
  }
  return bad;
}

/** Small files (many rolls), frequent checkpoints: a kill lands anywhere. */
const CRASH_ENV = {
  CHECKPOINT_INTERVAL_MS: '250',
  // Index records also go to disk between checkpoints, so a kill can land in either.
  INDEX_SPREAD_RECORDS: '64',
  JOURNAL_FILE_BYTES: '2M',
  ENTRY_LOG_FILE_BYTES: '2M',
  // Entries of 16 KiB and more are written once whatever the journal's backlog.
  ENTRY_LOG_DIRECT_BYTES: '16K',
  ENTRY_LOG_DIRECT_BACKLOG_BYTES: '0',
};

// 4 KiB entries go through the journal and the write cache; 64 KiB ones are
// written once (entry log + a journal reference) here.
for (const [size, transport] of [
  [4096, 'gRPC'],
  [64 * 1024, 'gRPC'],
  [4096, 'the add channel'],
  [64 * 1024, 'the add channel'],
] as const) {
  test(`bookie crash - kill -9 during a stream of ${size / 1024} KiB adds over ${transport} loses no acknowledged entry`, async (t) => {
    const dir = await tempDir(t);
    const metadata = testMetadataUrl(`bookie-crash-${size}`);
    const ports = await bookiePorts();
    const env = CRASH_ENV;
    const b1 = await BookieProcess.start({ metadata, dataDir: dir, ...ports, env });
    t.teardown(() => b1.kill('SIGKILL'));
    const c1 = bookieClient(b1.address);
    const adding =
      transport === 'gRPC' ? addUntilBroken(c1, 1, size) : addUntilBrokenOnChannel(b1.addAddress!, 1, size);
    await new Promise((r) => setTimeout(r, 1500));
    const { acked, client: c2 } = await killAndRestart(t, b1, adding, () =>
      BookieProcess.start({ metadata, dataDir: dir, ...ports, env }),
    );
    c1.close();
    t.true(acked.size > 100, `only ${acked.size} adds were acknowledged before the kill`);
    t.is(await mismatches(c2, 1, acked, size), 0);
    // Acks may complete out of order, but a range read of the prefix must be whole.
    let prefix = 0;
    while (acked.has(prefix)) prefix++;
    const chunks: ReadEntriesResponse__Output[] = [];
    await new Promise<void>((resolve, reject) => {
      const s = c2.readEntries({
        ledgerId: 1,
        firstEntryId: 0,
        lastEntryId: prefix - 1,
        maxBytesPerChunk: 64 * 1024,
      });
      s.on('data', (c: ReadEntriesResponse__Output) => chunks.push(c));
      s.on('error', reject);
      s.on('end', resolve);
    });
    const read = chunks.flatMap((c) => c.entries);
    t.is(read.length, prefix);
    t.true(chunks.length > 1, 'range reads come in bounded chunks');
    t.true(read.every((e, i) => e.entryId === i && e.payload.equals(testEntry(1, i, size).payload)));
  });
}

/**
 * A bookie's data dir, metadata and settings for a garbage-collection crash
 * test: GC keeps ledgers named in metadata. Ledger 1 is, until the test has
 * written it and deletes it (its entry logs with it); ledger 2 stays.
 */
async function gcCrashSetup(t: ExecutionContext, name: string, settings: Record<string, string>) {
  const dir = await tempDir(t);
  const metadata = testMetadataUrl(name);
  const ports = await bookiePorts();
  const env = { ...CRASH_ENV, ...settings, GC_INTERVAL_MS: '200', GC_GRACE_PERIOD_MS: '0' };
  const store = await openMetadataStore(metadata);
  t.teardown(() => store.close());
  await store.put('ledgers/1', Buffer.from('deleted once written'));
  await store.put('ledgers/2', Buffer.from('kept'));
  return { dir, metadata, ports, env, store };
}

test('bookie crash - kill -9 while large adds are written over reused entry logs loses no acknowledged entry', async (t) => {
  // Ledger 1's deleted entry logs become spares.
  const { dir, metadata, ports, env, store } = await gcCrashSetup(t, 'bookie-crash-spares', {
    ENTRY_LOG_SPARE_BYTES: '128M',
  });
  const size = 64 * 1024;
  const b1 = await BookieProcess.start({ metadata, dataDir: dir, ...ports, env });
  t.teardown(() => b1.kill('SIGKILL'));
  const c1 = bookieClient(b1.address);
  for (let batch = 0; batch < 24; batch++) {
    const entries = Array.from({ length: 64 }, (_, i) => testEntry(1, batch * 64 + i, size));
    await addAll(c1, [{ entries }]);
  }
  t.is(await bookieMetric(b1, 'sluice_bookie_entry_log_spares'), 0);
  await store.delete('ledgers/1');
  let spares = 0;
  for (const deadline = Date.now() + 20_000; Date.now() < deadline && spares < 24; ) {
    await new Promise((r) => setTimeout(r, 100));
    spares = await bookieMetric(b1, 'sluice_bookie_entry_log_spares');
  }
  t.true(spares >= 24, `only ${spares} deleted entry logs were kept as spares`);

  // Kill while the logs of ledger 2 are still spares written over: some
  // taken, some left (so no log it wrote was a fresh file).
  const adding = addUntilBroken(c1, 2, size);
  for (let left = spares; left > spares / 2; ) {
    await new Promise((r) => setTimeout(r, 20));
    left = await bookieMetric(b1, 'sluice_bookie_entry_log_spares');
  }
  const { acked, client: c2 } = await killAndRestart(t, b1, adding, () =>
    BookieProcess.start({ metadata, dataDir: dir, ...ports, env }),
  );
  c1.close();
  t.true(acked.size > 50, `only ${acked.size} adds were acknowledged before the kill`);
  t.is(await mismatches(c2, 2, acked, size), 0);
  // Unacknowledged references into reused logs were not taken for entries.
  let past = 0;
  for (let id = Math.max(...acked) + 1; id < Math.max(...acked) + 300; id++) {
    const r = await readEntry(c2, 2, id);
    if (r.status === 'ENTRY_STATUS_OK' && !r.entry?.payload.equals(testEntry(2, id, size).payload)) past++;
    if (r.status === 'ENTRY_STATUS_CORRUPT') past++;
  }
  t.is(past, 0, 'an entry past the acknowledged ones read back as other bytes or as corrupt');
});

test('bookie crash - fencing survives restarts, registration follows the session, a foreign data dir is refused', async (t) => {
  const dir = await tempDir(t);
  const metadata = testMetadataUrl('bookie-fence');
  const store = await openMetadataStore(metadata);
  t.teardown(() => store.close());
  const ports = await bookiePorts();
  const b1 = await BookieProcess.start({ metadata, dataDir: dir, ...ports });
  t.teardown(() => b1.kill('SIGKILL'));
  const c1 = bookieClient(b1.address);
  t.teardown(() => c1.close());

  const cookies = await store.listAll('bookies/cookies/');
  t.is(cookies.length, 1);
  const bookieId = cookies[0]!.key.slice(cookies[0]!.key.lastIndexOf('/') + 1);
  const reg = await store.get(`bookies/available/${bookieId}`);
  t.truthy(reg);
  t.like(JSON.parse(reg!.value.toString()), { address: b1.address, readOnly: false, rack: 'default' });
  const info = await unary(c1.getBookieInfo.bind(c1), {});
  t.like(info, { bookieId, readOnly: false });

  const added = await addAll(c1, [{ entries: [0, 1, 2].map((i) => testEntry(7, i)) }]);
  t.true(added.every((r) => r.status === 'ENTRY_STATUS_OK'));
  const fenced = await unary(c1.fence.bind(c1), { ledgerId: 7 });
  t.like(fenced, { status: 'ENTRY_STATUS_OK', lastEntryId: 2, lac: 1 });
  const refused = await addAll(c1, [{ entries: [testEntry(7, 3)] }]);
  t.is(refused[0]!.status, 'ENTRY_STATUS_FENCED');
  // A recovery read fences an untouched ledger too.
  const recRead = await readEntry(c1, 8, 0, true);
  t.is(recRead.status, 'ENTRY_STATUS_NO_ENTRY');

  await b1.stop();
  t.is(await store.get(`bookies/available/${bookieId}`), undefined);

  const b2 = await BookieProcess.start({ metadata, dataDir: dir, ...ports });
  t.teardown(() => b2.kill('SIGKILL'));
  const c2 = bookieClient(b2.address);
  t.teardown(() => c2.close());
  const results = await addAll(c2, [
    { entries: [testEntry(7, 3), testEntry(8, 0)] },
    { entries: [testEntry(7, 3)], recovery: true },
  ]);
  const byKey = (l: number, _recovery: boolean) =>
    results.filter((r) => r.ledgerId === l).map((r) => r.status);
  t.deepEqual(byKey(8, false), ['ENTRY_STATUS_FENCED']);
  t.deepEqual(byKey(7, false).sort(), ['ENTRY_STATUS_FENCED', 'ENTRY_STATUS_OK']);
  t.is((await readEntry(c2, 7, 3)).status, 'ENTRY_STATUS_OK');
  const lac = await unary(c2.readLac.bind(c2), { ledgerId: 7, fence: false });
  t.like(lac, { status: 'ENTRY_STATUS_OK', lastEntryId: 3 });
  await b2.stop();

  // Metadata now says this bookie id belongs to another instance: refuse to start.
  const cookie = await store.get(`bookies/cookies/${bookieId}`);
  const value = JSON.parse(cookie!.value.toString());
  await store.put(
    `bookies/cookies/${bookieId}`,
    Buffer.from(JSON.stringify({ ...value, instanceId: 'someone-else' })),
  );
  const b3 = BookieProcess.spawn({ metadata, dataDir: dir, ...(await bookiePorts()) });
  t.teardown(() => b3.kill('SIGKILL'));
  const code = await b3.exited;
  t.not(code, 0);
  t.regex(b3.output, /holds instance .* but metadata .* records instance someone-else/);
  t.notRegex(b3.output, /\n\s+at /, 'no stack trace');
});

test('bookie crash - deleted entry logs are freed in steps; kill -9 half way, and the restarted bookie frees the rest', async (t) => {
  const { dir, metadata, ports, env, store } = await gcCrashSetup(t, 'bookie-crash-deleting', {
    ENTRY_LOG_SPARE_BYTES: '0',
    // 2 MiB logs freed at 8 MiB/s: four logs a second.
    FILE_DELETE_RATE: '8M',
  });
  const size = 64 * 1024;
  const b1 = await BookieProcess.start({ metadata, dataDir: dir, ...ports, env });
  t.teardown(() => b1.kill('SIGKILL'));
  const c1 = bookieClient(b1.address);
  for (let batch = 0; batch < 16; batch++) {
    await addAll(c1, [{ entries: Array.from({ length: 64 }, (_, i) => testEntry(1, batch * 64 + i, size)) }]);
  }
  await addAll(c1, [{ entries: Array.from({ length: 64 }, (_, i) => testEntry(2, i, size)) }]);
  c1.close();
  const ledgerDir = join(dir, 'ledgers');
  const deletingOnDisk = async () => (await readdir(ledgerDir)).filter((n) => n.endsWith('.deleting')).length;
  await store.delete('ledgers/1');
  // 64 MiB of ledger 1 in ~32 logs: freeing them takes ~8 s at this rate.
  let deleting = 0;
  for (const deadline = Date.now() + 20_000; Date.now() < deadline && deleting < 8; ) {
    await new Promise((r) => setTimeout(r, 100));
    deleting = await bookieMetric(b1, 'sluice_bookie_deleting_files');
  }
  t.true(
    deleting >= 8,
    `only ${deleting} deleted logs were waiting to be freed: ${(await readdir(ledgerDir)).join(' ')}`,
  );
  t.true((await deletingOnDisk()) >= 8);
  await b1.kill('SIGKILL');

  const b2 = await BookieProcess.start({ metadata, dataDir: dir, ...ports, env });
  t.teardown(() => b2.kill('SIGKILL'));
  t.true((await bookieMetric(b2, 'sluice_bookie_deleting_files')) > 0, 'the restart took up the rest');
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
    if ((await bookieMetric(b2, 'sluice_bookie_deleting_files')) === 0 && (await deletingOnDisk()) === 0)
      break;
    await new Promise((r) => setTimeout(r, 200));
  }
  t.is(await bookieMetric(b2, 'sluice_bookie_deleting_files'), 0);
  t.is(await deletingOnDisk(), 0);
  const c2 = bookieClient(b2.address);
  t.teardown(() => c2.close());
  t.is(await mismatches(c2, 2, new Set(Array.from({ length: 64 }, (_, i) => i)), size), 0);
  t.is((await readEntry(c2, 1, 0)).status, 'ENTRY_STATUS_NO_LEDGER');
});
