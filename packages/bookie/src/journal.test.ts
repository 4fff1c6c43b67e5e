import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c, createRegistry, silentLogger } from '@sluice/common';
import test, { type ExecutionContext } from 'ava';
import { Journal, type JournalOptions, type JournalPosition } from './journal.js';
import { type JournalRecord, RecordType } from './journal-record.js';
import { createBookieMetrics } from './metrics.js';

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'journal-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function journal(dir: string, over: Partial<JournalOptions> = {}): Journal {
  return new Journal({
    dir,
    groupBytes: 512 * 1024,
    groupWaitMs: 0,
    fileBytes: 64 * 1024 * 1024,
    sync: true,
    preallocBytes: 0,
    maxWritesInFlight: 2,
    logger: silentLogger,
    metrics: createBookieMetrics(createRegistry(false)),
    ...over,
  });
}

function record(entryId: number, size = 100): JournalRecord {
  const payload = Buffer.alloc(size, entryId % 251);
  return {
    type: RecordType.ADD,
    ledgerId: 7,
    entryId,
    lac: entryId - 1,
    payloadCrc: crc32c(payload),
    ledgerLength: 0,
    payload,
  };
}

type Writev = (buffers: Buffer[], position: number) => Promise<{ bytesWritten: number }>;

/**
 * Intercept the journal files' writev (the current one and any it rolls to):
 * `gate(n)` decides, per write (0, 1, ...), what happens before (or instead
 * of) the real write.
 */
function interceptWrites(
  j: Journal,
  gate: (n: number, real: () => ReturnType<Writev>) => ReturnType<Writev>,
) {
  let n = 0;
  const wrap = (fh: { writev: Writev } | undefined) => {
    if (!fh) return fh;
    const real = fh.writev.bind(fh);
    fh.writev = (buffers, position) => gate(n++, () => real(buffers, position));
    return fh;
  };
  let current = wrap((j as unknown as { fh: { writev: Writev } }).fh);
  Object.defineProperty(j, 'fh', {
    get: () => current,
    set: (fh) => {
      current = wrap(fh);
    },
  });
}

/** A promise with its resolve function. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

test('with two writes in flight, a later group is written before the earlier one settles, and callbacks still run in append order', async (t) => {
  const dir = await tempDir(t);
  const j = journal(dir);
  await j.start();
  const release = deferred();
  const issued: number[] = [];
  interceptWrites(j, async (n, real) => {
    issued.push(n);
    // The first group's write is held back until the second one has been issued.
    if (n === 0) await release.promise;
    return real();
  });
  const order: number[] = [];
  const positions: JournalPosition[] = [];
  const done = (id: number) => (err: Error | undefined) => {
    t.is(err, undefined);
    order.push(id);
    positions.push({ ...j.syncedPosition });
  };
  j.append(record(0), done(0));
  await new Promise((r) => setImmediate(r));
  j.append(record(1), done(1));
  j.append(record(2), done(2));
  // The second group goes out while the first is still in flight.
  for (let i = 0; i < 50 && issued.length < 2; i++) await new Promise((r) => setTimeout(r, 2));
  t.deepEqual(issued, [0, 1]);
  t.deepEqual(order, [], 'nothing is acknowledged before the first group is durable');
  release.resolve();
  await j.idle();
  t.deepEqual(order, [0, 1, 2]);
  // The synced position only moves forward, and a callback runs before it passes its record.
  t.true(positions[0].offset < positions[2].offset);
  t.is(positions[1].offset, positions[2].offset, 'records 1 and 2 shared a group');
  await j.close();

  const replayed: number[] = [];
  await journal(dir).replay({ fileId: 0, offset: 0 }, (rec) => {
    replayed.push(rec.entryId);
  });
  t.deepEqual(replayed, [0, 1, 2]);
});

test('a failed earlier write fails the later group too, even though its own write went through', async (t) => {
  const dir = await tempDir(t);
  const j = journal(dir);
  await j.start();
  const release = deferred();
  interceptWrites(j, async (n, real) => {
    if (n === 0) {
      await release.promise;
      throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
    }
    return real();
  });
  const outcomes: [number, string | undefined][] = [];
  const done = (id: number) => (err: Error | undefined) => outcomes.push([id, err?.message]);
  j.append(record(0), done(0));
  await new Promise((r) => setImmediate(r));
  j.append(record(1), done(1));
  await new Promise((r) => setTimeout(r, 20));
  t.deepEqual(outcomes, [], 'the second group waits for the first');
  release.resolve();
  await j.idle();
  t.deepEqual(outcomes, [
    [0, 'EIO: i/o error, write'],
    [1, 'EIO: i/o error, write'],
  ]);
  t.is(j.failed?.message, 'EIO: i/o error, write');
  // The journal stays poisoned: no retry of a failed flush.
  const late = await new Promise<Error | undefined>((r) => j.append(record(2), r));
  t.is(late?.message, 'EIO: i/o error, write');
  await j.close();
});

test('a file roll waits for the writes in flight, and every record replays in order across files', async (t) => {
  const dir = await tempDir(t);
  // Small files: most groups roll.
  const j = journal(dir, { fileBytes: 4 * 1024 });
  await j.start();
  let inFlight = 0;
  let maxInFlight = 0;
  /** A write began in another file while writes to the previous one were in flight. */
  let overlappedRoll = false;
  let lastFile = -1;
  interceptWrites(j, async (_n, real) => {
    const file = (j as unknown as { fileId: number }).fileId;
    if (file !== lastFile && inFlight > 0) overlappedRoll = true;
    lastFile = file;
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    try {
      await new Promise((r) => setTimeout(r, 1));
      return await real();
    } finally {
      inFlight--;
    }
  });
  const acked: number[] = [];
  const all: Promise<void>[] = [];
  for (let i = 0; i < 200; i++) {
    all.push(
      new Promise((resolve, reject) =>
        j.append(record(i, 700), (err) => {
          if (err) reject(err);
          else {
            acked.push(i);
            resolve();
          }
        }),
      ),
    );
    await new Promise((r) => setTimeout(r, i % 2));
  }
  await Promise.all(all);
  await j.close();
  t.deepEqual(
    acked,
    Array.from({ length: 200 }, (_, i) => i),
  );
  const files = (await j.listFileIds()).length;
  t.true(files > 10, `the journal rolled (${files} files)`);
  t.true(maxInFlight <= 2);
  t.false(overlappedRoll, 'no write to a new file while the old one had writes in flight');

  const replayed: number[] = [];
  await journal(dir).replay({ fileId: 0, offset: 0 }, (rec) => {
    t.true(rec.payload.equals(record(rec.entryId, 700).payload));
    replayed.push(rec.entryId);
  });
  t.deepEqual(
    replayed,
    Array.from({ length: 200 }, (_, i) => i),
  );
});

test('a callback that throws does not keep the rest of its group, or later groups, from being acknowledged', async (t) => {
  const dir = await tempDir(t);
  const j = journal(dir);
  await j.start();
  const acked: number[] = [];
  j.append(record(0), () => {
    throw new Error('caller bug');
  });
  j.append(record(1), (err) => {
    if (!err) acked.push(1);
  });
  await j.idle();
  j.append(record(2), (err) => {
    if (!err) acked.push(2);
  });
  await j.idle();
  t.deepEqual(acked, [1, 2]);
  t.is(j.failed, undefined);
  await j.close();
});

test('the next file is prepared ahead: a roll does not wait for it, and replay passes over a prepared spare', async (t) => {
  const dir = await tempDir(t);
  const j = journal(dir, { fileBytes: 4 * 1024 });
  const internals = j as unknown as {
    fileId: number;
    prepareFile: (id: number) => Promise<unknown>;
    use: (file: { id: number }) => void;
  };
  // What happened, in order: preparations started, files put in use, appends.
  const events: string[] = [];
  const prepare = internals.prepareFile.bind(j);
  internals.prepareFile = async (id: number) => {
    events.push(`prepare ${id}`);
    // Preparing a file fsyncs the directory, slow on a busy disk.
    await new Promise((r) => setTimeout(r, 150));
    return prepare(id);
  };
  const use = internals.use.bind(j);
  internals.use = (file) => {
    events.push(`use ${file.id}`);
    use(file);
  };
  const waitFor = async (what: string, ok: () => Promise<boolean>) => {
    for (let i = 0; i < 200 && !(await ok()); i++) await new Promise((r) => setTimeout(r, 25));
    t.true(await ok(), what);
  };
  await j.start();
  await waitFor('the next file exists before any roll', async () => (await j.listFileIds()).length === 2);

  const append = (i: number) =>
    new Promise<void>((resolve, reject) => {
      events.push('append');
      j.append(record(i, 700), (err) => (err ? reject(err) : resolve()));
    });
  // Six records of ~750 bytes fill a 4 KiB file: rolls at 6, 12, 18.
  for (let i = 0; i < 24; i++) {
    await append(i);
    if (i % 6 === 5) await new Promise((r) => setTimeout(r, 200));
  }
  const used = events.filter((e) => e.startsWith('use ')).map((e) => Number(e.slice(4)));
  t.true(used.length >= 4, `the journal rolled (${events.join(', ')})`);
  for (const id of used.slice(0, -1)) {
    // Preparing file id + 1 starts when file id is put in use, before any add
    // written into it, never at the roll that needs it.
    const at = events.indexOf(`use ${id}`);
    t.is(events[at + 1], `prepare ${id + 1}`, `file ${id + 1} is prepared as soon as ${id} is in use`);
  }

  // Retire the early files as spares: the next prepared file is one, full of stale records.
  const from: JournalPosition = { ...j.syncedPosition };
  t.true((await j.deleteBefore(from)) > 0);
  for (let i = 24; i < 40; i++) {
    await append(i);
    if (i % 6 === 5) await new Promise((r) => setTimeout(r, 200));
  }
  await waitFor(
    'a file after the current one is prepared',
    async () => internals.fileId < (await j.listFileIds()).at(-1)!,
  );
  await j.close();
  const replayed: number[] = [];
  await journal(dir).replay(from, (rec) => {
    t.true(rec.payload.equals(record(rec.entryId, 700).payload));
    replayed.push(rec.entryId);
  });
  t.deepEqual(
    replayed,
    Array.from({ length: 16 }, (_, i) => 24 + i),
  );
});

test('a next file whose preparation failed in the background is prepared again at the roll', async (t) => {
  const dir = await tempDir(t);
  const j = journal(dir, { fileBytes: 4 * 1024 });
  const internals = j as unknown as { prepareFile: (id: number) => Promise<unknown> };
  const prepare = internals.prepareFile.bind(j);
  let failed = 0;
  internals.prepareFile = async (id: number) => {
    if (id === 2 && failed++ === 0) throw new Error('ENOSPC (simulated)');
    return prepare(id);
  };
  await j.start();
  for (let i = 0; i < 14; i++) {
    await new Promise<void>((resolve, reject) =>
      j.append(record(i, 700), (err) => (err ? reject(err) : resolve())),
    );
  }
  t.is(failed, 2, 'tried in the background, then again at the roll');
  t.is(j.failed, undefined);
  t.true((await j.listFileIds()).length >= 3, 'rolled into file 2 and beyond');
  await j.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('journal - a write carrying zero fill never overlaps another write, so its zeros never erase a later group', async (t) => {
  const dir = await tempDir(t);
  const prealloc = 1024 * 1024;
  const j = journal(dir, { preallocBytes: prealloc });
  await j.start();
  // The kernel may run two pwritev calls in either order: hold the first
  // write (the fresh file's first group, which carries the fill) until the
  // second has landed, or until it is clear no second one is coming.
  const secondLanded = deferred();
  let inFlight = 0;
  let overlapped = false;
  interceptWrites(j, async (n, real) => {
    if (inFlight > 0) overlapped = true;
    inFlight++;
    try {
      if (n === 0) await Promise.race([secondLanded.promise, sleep(200)]);
      const res = await real();
      if (n === 1) secondLanded.resolve();
      return res;
    } finally {
      inFlight--;
    }
  });
  const acked: number[] = [];
  const done = (id: number) => (err: Error | undefined) => {
    if (!err) acked.push(id);
  };
  j.append(record(0), done(0));
  await new Promise((r) => setImmediate(r));
  j.append(record(1), done(1));
  j.append(record(2), done(2));
  await j.idle();
  j.append(record(3), done(3));
  await j.idle();
  await j.close();
  t.deepEqual(acked, [0, 1, 2, 3]);
  const replayed: number[] = [];
  await journal(dir).replay({ fileId: 0, offset: 0 }, (rec) => {
    replayed.push(rec.entryId);
  });
  t.deepEqual(replayed, [0, 1, 2, 3], 'every acknowledged record replays');
  t.false(overlapped, 'no write started while the one carrying fill was out');
  const [id] = await j.listFileIds();
  const size = (await stat(join(dir, `journal-${String(id).padStart(16, '0')}.log`))).size;
  t.true(size >= prealloc, `the fill was written (${size} bytes)`);
});

test('journal - with zero fill on, groups inside the filled stretch still go out two at a time', async (t) => {
  const dir = await tempDir(t);
  const j = journal(dir, { preallocBytes: 1024 * 1024 });
  await j.start();
  // The first group fills ahead, alone.
  await new Promise<Error | undefined>((r) => j.append(record(0), r));
  const release = deferred();
  const issued: number[] = [];
  interceptWrites(j, async (n, real) => {
    issued.push(n);
    if (n === 0) await release.promise;
    return real();
  });
  const acked: number[] = [];
  const done = (id: number) => (err: Error | undefined) => {
    if (!err) acked.push(id);
  };
  j.append(record(1), done(1));
  await new Promise((r) => setImmediate(r));
  j.append(record(2), done(2));
  for (let i = 0; i < 50 && issued.length < 2; i++) await sleep(2);
  t.deepEqual(issued, [0, 1], 'the second group was written while the first was in flight');
  t.deepEqual(acked, []);
  release.resolve();
  await j.idle();
  t.deepEqual(acked, [1, 2]);
  await j.close();
  const replayed: number[] = [];
  await journal(dir).replay({ fileId: 0, offset: 0 }, (rec) => {
    replayed.push(rec.entryId);
  });
  t.deepEqual(replayed, [0, 1, 2]);
});
