import { FencedError, OutOfRangeError, type Position } from '@sluice/common';
import test from 'ava';
import type { ManagedLog } from './api.js';
import { createRig, type Rig } from './test-harness.js';

const payload = (i: number) => Buffer.from(`entry-${i}-${'x'.repeat(i % 37)}`);

async function appendAll(log: ManagedLog, from: number, n: number): Promise<Position[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => log.append(payload(from + i))));
}

async function readAll(log: ManagedLog): Promise<Buffer[]> {
  const out: Buffer[] = [];
  let p = log.firstPosition();
  while (p) {
    const batch = await log.read(p, 37);
    if (batch.length === 0) break;
    out.push(...batch.map((e) => e.payload));
    p = log.nextPosition(batch[batch.length - 1]!.position);
  }
  return out;
}

let rig: Rig;
test.beforeEach(async () => {
  rig = await createRig();
});
test.afterEach.always(async () => {
  await rig.close();
});

test.serial('managed log - pipelined appends resolve in order across rollovers and read back', async (t) => {
  const log = await rig.factory().open('t/ns/a', { maxEntriesPerLedger: 25 });
  const positions = await appendAll(log, 0, 200);
  for (let i = 1; i < positions.length; i++) {
    const a = positions[i - 1]!;
    const b = positions[i]!;
    t.true(b.ledgerId > a.ledgerId || (b.ledgerId === a.ledgerId && b.entryId === a.entryId + 1));
  }
  const stats = log.stats();
  t.true(stats.ledgers.length >= 8, `${stats.ledgers.length} ledgers`);
  t.is(stats.entries, 200);
  const back = await readAll(log);
  t.deepEqual(
    back,
    Array.from({ length: 200 }, (_, i) => payload(i)),
  );
  await log.close();
  const again = await rig.factory().open('t/ns/a');
  t.deepEqual(await readAll(again), back, 'a fresh opener reads the same entries from bookies');
});

test.serial(
  'managed log - a topic that moves away and back keeps ledger ids rising, so every entry reads back',
  async (t) => {
    // Each factory has its own ledger client, so its own block of ledger ids:
    // X takes ids from the first block, Y from the second, X again from the first.
    const x = rig.factory();
    const y = rig.factory();
    const first = await x.open('t/ns/moves');
    await appendAll(first, 0, 5);
    await first.close();
    const second = await y.open('t/ns/moves');
    await appendAll(second, 5, 5);
    await second.close();
    const third = await x.open('t/ns/moves');
    await appendAll(third, 10, 5);
    const ids = third.stats().ledgers.map((l) => l.ledgerId);
    t.true(
      ids.every((id, i) => i === 0 || id > ids[i - 1]!),
      `ledger ids along the log rise: ${ids.join(', ')}`,
    );
    t.deepEqual(
      await readAll(third),
      Array.from({ length: 15 }, (_, i) => payload(i)),
    );
  },
);

test.serial('managed log - a second opener fences the first, whose appends then fail', async (t) => {
  const first = await rig.factory().open('t/ns/fence');
  await appendAll(first, 0, 10);
  const second = await rig.factory().open('t/ns/fence');
  await t.throwsAsync(first.append(payload(99)), { instanceOf: FencedError });
  t.true(first.fenced);
  await t.throwsAsync(first.append(payload(100)), { instanceOf: FencedError });
  await appendAll(second, 10, 5);
  t.deepEqual(
    await readAll(second),
    Array.from({ length: 15 }, (_, i) => payload(i)),
  );
});

test.serial('managed log - reads before the first or after the last entry fail clearly', async (t) => {
  const log = await rig.factory().open('t/ns/range');
  const [p] = await appendAll(log, 0, 3);
  await t.throwsAsync(log.read({ ledgerId: p!.ledgerId, entryId: 10 }, 1), {
    code: 'OUT_OF_RANGE',
    message: /after the end/,
  } as never);
  await t.throwsAsync(log.read({ ledgerId: p!.ledgerId - 1, entryId: 0 }, 1), {
    code: 'OUT_OF_RANGE',
  } as never);
  t.deepEqual(await log.read({ ledgerId: p!.ledgerId, entryId: 3 }, 5), [], 'the next position reads empty');
});

test.serial('managed log - onEntryAfter wakes a tailing reader once the next entry is durable', async (t) => {
  const log = await rig.factory().open('t/ns/tail');
  const [p] = await appendAll(log, 0, 1);
  let woke = false;
  const waiting = new Promise<void>((resolve) =>
    log.onEntryAfter(p, () => {
      woke = true;
      resolve();
    }),
  );
  await new Promise((r) => setTimeout(r, 20));
  t.false(woke);
  const [q] = await appendAll(log, 1, 1);
  await waiting;
  t.deepEqual((await log.read(q!, 1))[0]!.payload, payload(1));
});

test.serial('managed log - onEntryAfter calls back once per registration and can be cancelled', async (t) => {
  const log = await rig.factory().open('t/ns/tail-cb');
  const [p] = await appendAll(log, 0, 1);
  let now = 0;
  log.onEntryAfter(undefined, () => now++);
  t.is(now, 1, 'an entry exists already: called at once');
  let fired = 0;
  let cancelledFired = 0;
  log.onEntryAfter(p, () => fired++);
  const cancel = log.onEntryAfter(p, () => cancelledFired++);
  cancel();
  t.is(fired, 0);
  await appendAll(log, 1, 2);
  t.is(fired, 1, 'called once, not per entry');
  t.is(cancelledFired, 0, 'a cancelled registration is never called');
  // A callback may register again from inside the call.
  const [r] = await appendAll(log, 3, 1);
  let again = 0;
  log.onEntryAfter(r, () => log.onEntryAfter(r, () => again++));
  await appendAll(log, 4, 1);
  t.is(again, 1);
});

test.serial('managed log - unrecoverable write failure rolls over and loses nothing', async (t) => {
  const log = await rig.factory().open('t/ns/fail', { ensembleSize: 2, writeQuorum: 2, ackQuorum: 2 });
  await appendAll(log, 0, 5);
  // Two of three bookies go down: no ensemble change can help the open ledger.
  rig.bookies[0]!.crash();
  rig.bookies[1]!.crash();
  const pending = appendAll(log, 5, 20);
  await new Promise((r) => setTimeout(r, 300));
  rig.bookies[0]!.restart();
  rig.bookies[1]!.restart();
  await pending;
  const back = await readAll(log);
  // At-least-once: every payload is there, in order of first appearance.
  const seen = [...new Set(back.map((b) => b.toString()))];
  t.deepEqual(
    seen,
    Array.from({ length: 25 }, (_, i) => payload(i).toString()),
  );
});

test.serial(
  'managed log - a position in an empty ledger a rollover dropped reads on from the next entry',
  async (t) => {
    const log = await rig.factory().open('t/ns/dropped', { ensembleSize: 2, writeQuorum: 2, ackQuorum: 2 });
    const cursor = await log.openCursor('sub', 'latest');
    // The end of the empty log: entry 0 of its open ledger.
    const end = cursor.readPosition;
    t.deepEqual(await log.read(end, 10), []);
    // Two of three bookies go down: the empty open ledger fails and is dropped at the rollover.
    rig.bookies[0]!.crash();
    rig.bookies[1]!.crash();
    const pending = log.append(payload(0));
    await new Promise((r) => setTimeout(r, 300));
    rig.bookies[0]!.restart();
    rig.bookies[1]!.restart();
    const p = await pending;
    t.not(p.ledgerId, end.ledgerId);
    t.false(
      log.stats().ledgers.some((l) => l.ledgerId === end.ledgerId),
      'the empty ledger left the list',
    );
    const entries = await log.read(cursor.readPosition, 10);
    t.deepEqual(
      entries.map((e) => e.position),
      [p],
      'the cursor reads the entry appended after it',
    );
    t.deepEqual(entries[0]!.payload, payload(0));
    t.deepEqual(
      (await log.read(end, 10)).map((e) => e.position),
      [p],
      'so does any reader holding that end position',
    );
    t.is(cursor.backlog(), 1);
    // Only entry 0 of such a ledger is a position; others are refused as before.
    await t.throwsAsync(log.read({ ledgerId: end.ledgerId, entryId: 1 }, 1), { instanceOf: OutOfRangeError });
  },
);

test.serial('managed log - a dropped empty ledger before a trimmed one reads as trimmed', async (t) => {
  const log = await rig.factory().open('t/ns/dropped-trim', {
    ensembleSize: 2,
    writeQuorum: 2,
    ackQuorum: 2,
    maxEntriesPerLedger: 2,
  });
  const cursor = await log.openCursor('sub', 'latest');
  const end = cursor.readPosition;
  rig.bookies[0]!.crash();
  rig.bookies[1]!.crash();
  const pending = appendAll(log, 0, 5);
  await new Promise((r) => setTimeout(r, 300));
  rig.bookies[0]!.restart();
  rig.bookies[1]!.restart();
  const ps = await pending;
  cursor.ackCumulative(ps[3]!);
  t.true((await log.trim()) > 0);
  // Entries after that position were trimmed: reading on from it would skip them silently.
  await t.throwsAsync(log.read(end, 10), { instanceOf: OutOfRangeError, message: /trimmed/ });
});

test.serial('managed log - seekByTime finds the first entry at or after a time', async (t) => {
  const log = await rig.factory().open('t/ns/seek', { maxEntriesPerLedger: 7 });
  const positions: Position[] = [];
  for (let i = 0; i < 40; i++) {
    const b = Buffer.alloc(8);
    b.writeDoubleBE(1000 + i * 10);
    positions.push(await log.append(b));
  }
  const timeOf = (p: Buffer) => p.readDoubleBE(0);
  t.deepEqual(await log.seekByTime(1155, timeOf), positions[16]);
  t.deepEqual(await log.seekByTime(1160, timeOf), positions[16]);
  t.deepEqual(await log.seekByTime(0, timeOf), positions[0]);
  const end = await log.seekByTime(99_999, timeOf);
  t.deepEqual(
    end,
    log.nextPosition(positions[39]!) ?? { ledgerId: positions[39]!.ledgerId, entryId: 40 % 7 },
  );
});

test.serial('managed log - entries every cursor acknowledged leave the tail cache', async (t) => {
  const log = await rig.factory().open('t/ns/evict');
  const a = await log.openCursor('a', 'earliest');
  const b = await log.openCursor('b', 'earliest');
  const positions = await appendAll(log, 0, 20);
  const bookieReads = () => rig.bookies.reduce((n, bk) => n + bk.received.read + bk.received.readRange, 0);
  a.ackCumulative(positions[19]!);
  const before = bookieReads();
  t.is((await log.read(positions[0]!, 20)).length, 20);
  t.is(bookieReads(), before, 'b has not acked: everything is still served from memory');
  b.ackCumulative(positions[9]!);
  t.deepEqual(
    (await log.read(positions[10]!, 10)).map((e) => e.payload),
    Array.from({ length: 10 }, (_, i) => payload(10 + i)),
  );
  t.is(bookieReads(), before, 'entries after the slowest mark-delete stay cached');
  t.deepEqual(
    (await log.read(positions[0]!, 10)).map((e) => e.payload),
    Array.from({ length: 10 }, (_, i) => payload(i)),
    'acked entries still read back, from the bookies',
  );
  t.true(bookieReads() > before);
  await log.close();
});

test.serial(
  'managed log - a cursor that does not hold the tail cache leaves acked entries to go',
  async (t) => {
    const log = await rig.factory().open('t/ns/bookmark');
    const reader = await log.openCursor('reader', 'earliest');
    // Opened before the entries as it would be after a restart, then marked.
    const opened = await log.openCursor('__mark', 'earliest');
    const positions = await appendAll(log, 0, 12);
    const bookieReads = () => rig.bookies.reduce((n, bk) => n + bk.received.read + bk.received.readRange, 0);
    reader.ackCumulative(positions[5]!);
    let before = bookieReads();
    await log.read(positions[0]!, 6);
    t.is(bookieReads(), before, 'the bookmark still holds them: served from memory');
    const mark = await log.openCursor('__mark', 'earliest', { holdsTailCache: false });
    t.is(mark, opened, 'the same cursor');
    t.true(
      mark.markDelete.entryId < positions[0]!.entryId || mark.markDelete.ledgerId < positions[0]!.ledgerId,
    );
    before = bookieReads();
    t.deepEqual(
      (await log.read(positions[0]!, 6)).map((e) => e.payload),
      Array.from({ length: 6 }, (_, i) => payload(i)),
    );
    t.true(bookieReads() > before, 'entries the reader acked came back from the bookies');
    before = bookieReads();
    await log.read(positions[6]!, 6);
    t.is(bookieReads(), before, 'entries the reader has not acked stay cached');
    reader.ackCumulative(positions[8]!);
    before = bookieReads();
    await log.read(positions[7]!, 2);
    t.true(bookieReads() > before, 'later acks evict too, whatever the bookmark says');
    await log.close();
  },
);

test.serial(
  'managed log - an entry appended in parts is stored whole and read from the cache in its parts',
  async (t) => {
    const log = await rig.factory().open('t/ns/parts');
    const cursor = await log.openCursor('c', 'earliest');
    const head = Buffer.from('header|');
    const body = Buffer.alloc(3000, 0x42);
    const whole = Buffer.concat([head, body]);
    const [p] = await Promise.all([log.append([head, body]), log.append(payload(1))]);
    const bookieReads = () => rig.bookies.reduce((n, bk) => n + bk.received.read + bk.received.readRange, 0);
    const before = bookieReads();
    const [cached, plain] = await log.read(p!, 2);
    t.is(bookieReads(), before, 'served from the tail cache');
    t.is(cached!.parts?.[0], head, 'the parts as appended, not copies');
    t.is(cached!.parts?.[1], body);
    t.true(cached!.payload.equals(whole), 'joined on demand');
    t.is(plain!.parts, undefined);
    t.true(plain!.payload.equals(payload(1)));
    t.is(log.stats().entries, 2);
    // Once acknowledged the entry leaves the cache and comes back from the bookies, whole.
    cursor.ackCumulative(plain!.position);
    const [fromBookies] = await log.read(p!, 1);
    t.true(bookieReads() > before);
    t.is(fromBookies!.parts, undefined);
    t.true(fromBookies!.payload.equals(whole));
    await log.close();
  },
);
