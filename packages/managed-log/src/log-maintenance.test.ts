import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CorruptDataError,
  FailedPreconditionError,
  FencedError,
  type LedgerId,
  ManualClock,
  OutOfRangeError,
  type Position,
  systemClock,
  UnavailableError,
} from '@sluice/common';
import type { BookKeeperClient } from '@sluice/ledger';
import type { OffloadResult } from '@sluice/offload';
import test, { type ExecutionContext } from 'ava';
import type { Cursor, ManagedLog } from './api.js';
import { LedgerListStore } from './ledger-list.js';
import type { LogContext } from './log-context.js';
import { CUSTOM_CURSOR, CUSTOM_LOG, CUSTOM_ROLE, cursorKey } from './log-keys.js';
import { ManagedLogFactory } from './managed-log-factory.js';
import { referencedLedgers } from './orphan-sweeper.js';
import { createRig, FAST, type Rig } from './test-harness.js';

let rig: Rig;
test.beforeEach(async () => {
  rig = await createRig();
});
test.afterEach.always(async () => {
  await rig.close();
});

async function fill(log: ManagedLog, n: number, tag = 'm'): Promise<Position[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => log.append(Buffer.from(`${tag}${i}`))));
}

/** Ledgers in metadata that name `log` (data and cursor). */
async function ledgersOf(log: string): Promise<Set<LedgerId>> {
  const out = new Set<LedgerId>();
  for (const { key } of await rig.metadata.listAll('ledgers/', { keysOnly: true })) {
    const id = Number(key.slice(key.lastIndexOf('/') + 1));
    if (!Number.isSafeInteger(id)) continue;
    const md = await rig.ledgers.getLedgerMetadata(id);
    if (md?.custom[CUSTOM_LOG] === log) out.add(id);
  }
  return out;
}

test.serial(
  'trim - deletes consumed ledgers past retention, never the open one, leaving no orphans',
  async (t) => {
    const log = await rig.factory().open('t/ns/trim', { maxEntriesPerLedger: 5 });
    const c = await log.openCursor('sub', 'earliest');
    const ps = await fill(log, 23);
    t.is(await log.trim(), 0, 'nothing consumed yet');
    c.ackCumulative(ps[11]!);
    await c.flush();
    t.is(await log.trim(), 2);
    t.deepEqual(log.firstPosition(), ps[10]);
    c.ackCumulative(ps[22]!);
    await c.flush();
    await log.trim();
    const stats = log.stats();
    t.true(
      stats.ledgers.every((l) => l.ledgerId >= ps[22]!.ledgerId),
      'only the last ledgers remain',
    );
    t.true(stats.ledgers.some((l) => l.open));
    const listed = await ledgersOf('t/ns/trim');
    t.deepEqual([...listed].sort(), [...(await referencedLedgers(rig.metadata, 't/ns/trim'))].sort());
    t.deepEqual((await new LedgerListStore(rig.metadata, 't/ns/trim').read())!.list.trash, []);
  },
);

test.serial('trim - retention by size keeps consumed ledgers', async (t) => {
  const log = await rig.factory().open('t/ns/ret', {
    maxEntriesPerLedger: 5,
    retentionSizeBytes: 300,
    retentionTimeMs: -1,
  });
  const ps = await fill(log, 20, 'x'.repeat(40));
  const c = await log.openCursor('sub', 'earliest');
  c.ackCumulative(ps[19]!);
  const sealed = () => log.stats().ledgers.filter((l) => !l.open);
  const size = sealed()[0]!.size;
  t.is(sealed().length, 3);
  // Dropping the oldest leaves 2 ledgers (>= 300 bytes); dropping another would not.
  t.is(await log.trim(), 1);
  t.is(sealed().length, 2);
  t.true(2 * size >= 300 && size < 300);
  t.is(await log.trim(), 0);
});

test.serial(
  'offload - offloaded ledgers read back identically after bookie copies are deleted',
  async (t) => {
    const log = await rig.factory().open('t/ns/off', { maxEntriesPerLedger: 10, offloadDeletionLagMs: 0 });
    const ps = await fill(log, 45);
    t.is(await log.offloadNow(), 4);
    const stats = log.stats();
    const sealed = stats.ledgers.filter((l) => !l.open);
    t.true(sealed.every((l) => l.offloaded && l.bookieCopyDeleted && l.offloadUuid));
    for (const l of sealed) t.is(await rig.ledgers.getLedgerMetadata(l.ledgerId), undefined);
    t.true(stats.offloadedBytes > 0);
    const back = await log.read(ps[0]!, 100);
    t.deepEqual(
      back.map((e) => e.payload.toString()),
      Array.from({ length: 45 }, (_, i) => `m${i}`),
    );
    await log.close();
    const fresh = await rig.factory().open('t/ns/off');
    const again = await fresh.read(ps[0]!, 100);
    t.deepEqual(
      again.map((e) => e.payload.toString()),
      Array.from({ length: 45 }, (_, i) => `m${i}`),
    );
    // Trimming an offloaded ledger deletes its objects too.
    const c = await fresh.openCursor('sub', 'earliest');
    c.ackCumulative(ps[44]!);
    await fresh.trim();
    const listing = await rig.offloader.list();
    t.deepEqual(listing, []);
  },
);

test.serial('offload - a failed attempt leaves no referenced object and a retry completes', async (t) => {
  const log = await rig.factory().open('t/ns/offfail', { maxEntriesPerLedger: 10 });
  await fill(log, 25);
  const real = rig.offloader.offload.bind(rig.offloader);
  let failures = 1;
  rig.offloader.offload = async (source, options) => {
    if (failures-- > 0) {
      await real(source, options); // objects written, then the "process dies" before the list records it
      throw new Error('simulated crash after upload');
    }
    return real(source, options);
  };
  await t.throwsAsync(log.offloadNow());
  const pending = log.stats().ledgers.filter((l) => l.offloaded);
  t.is(pending.length, 0, 'no offload referenced after the failure');
  t.is(await log.offloadNow(), 2);
  await (log as unknown as { maintain(): Promise<void> }).maintain();
  const listing = await rig.offloader.list();
  const referenced = new Set(
    log
      .stats()
      .ledgers.map((l) => l.offloadUuid)
      .filter(Boolean),
  );
  t.true(
    listing.every((o) => referenced.has(o.uuid)),
    'debris of the failed attempt was deleted',
  );
});

test.serial(
  'offload - trim during an upload keeps that ledger and leaves no cold-tier orphans',
  async (t) => {
    const log = await rig.factory().open('t/ns/offtrim', { maxEntriesPerLedger: 5 });
    const c = await log.openCursor('sub', 'earliest');
    const ps = await fill(log, 12);
    c.ackCumulative(ps[11]!);
    await c.flush();
    const real = rig.offloader.offload.bind(rig.offloader);
    const trimmedDuringUpload: number[] = [];
    rig.offloader.offload = async (source, options) => {
      trimmedDuringUpload.push(await log.trim());
      t.true(
        log.stats().ledgers.some((l) => l.ledgerId === source.ledgerId),
        `ledger ${source.ledgerId} stays listed while it uploads`,
      );
      return real(source, options);
    };
    t.is(await log.offloadNow(), 2);
    // The first upload holds the oldest ledger; during the second the first (now offloaded) goes.
    t.deepEqual(trimmedDuringUpload, [0, 1]);
    t.is(await log.trim(), 1);
    t.deepEqual(await rig.offloader.list(), []);
    t.deepEqual((await new LedgerListStore(rig.metadata, 't/ns/offtrim').read())!.list.trash, []);
  },
);

test.serial('offload - objects of a ledger that left the list mid-upload are deleted', async (t) => {
  const log = await rig.factory().open('t/ns/offgone', { maxEntriesPerLedger: 5 });
  await fill(log, 7);
  const ctx = (log as unknown as { ctx: LogContext }).ctx;
  const real = rig.offloader.offload.bind(rig.offloader);
  rig.offloader.offload = async (source, options) => {
    const res = await real(source, options);
    // Whatever removed the ledger trashed the pending uuid before its objects existed.
    await ctx.mutateList((list) => {
      list.ledgers = list.ledgers.filter((l) => l.ledgerId !== source.ledgerId);
    });
    t.true((await rig.offloader.list()).length > 0, 'objects were uploaded');
    return res;
  };
  await log.offloadNow();
  t.deepEqual(await rig.offloader.list(), []);
  t.deepEqual(ctx.list.trash, []);
});

test.serial('trim - a cursor created at earliest while trim runs keeps every entry', async (t) => {
  const log = await rig.factory().open('t/ns/trimcreate', { maxEntriesPerLedger: 5 });
  const c = await log.openCursor('sub', 'earliest');
  const ps = await fill(log, 12);
  c.ackCumulative(ps[11]!);
  await c.flush();
  const realPut = rig.metadata.put.bind(rig.metadata);
  let trimmedWhileCreating: number | undefined;
  rig.metadata.put = async (key, value, opts) => {
    if (key.endsWith('/late') && trimmedWhileCreating === undefined) trimmedWhileCreating = await log.trim();
    return realPut(key, value, opts);
  };
  const late = await log.openCursor('late', 'earliest');
  rig.metadata.put = realPut;
  t.is(trimmedWhileCreating, 0, 'the cursor being created holds the log');
  t.deepEqual(log.firstPosition(), ps[0]);
  t.deepEqual(late.readPosition, ps[0]);
  t.is(late.backlog(), 12);
  t.is(await log.trim(), 0, 'the new cursor now holds the log itself');
});

test.serial(
  'trim - a reset racing a trim into a trimmed ledger fails instead of moving elsewhere',
  async (t) => {
    const log = await rig.factory().open('t/ns/trimreset', { maxEntriesPerLedger: 5 });
    const c = await log.openCursor('sub', 'earliest');
    const ps = await fill(log, 12);
    c.ackCumulative(ps[11]!);
    await c.flush();
    // Trim has picked its victims from the current positions; its CAS is in flight.
    const trimming = log.trim();
    await t.throwsAsync(c.reset(ps[1]!), { instanceOf: OutOfRangeError });
    t.is(await trimming, 2);
    t.deepEqual(c.markDelete, ps[11], 'the failed reset left the cursor where it was');
    await c.reset(ps[10]!);
    t.deepEqual(c.readPosition, ps[10]);
  },
);

test.serial('sweeper - deletes ledgers of a log that its list does not reference', async (t) => {
  const f = rig.factory();
  const log = await f.open('t/ns/sweep');
  await fill(log, 3);
  const orphan = await rig.ledgers.createLedger({
    ensembleSize: 2,
    writeQuorum: 2,
    ackQuorum: 2,
    custom: { [CUSTOM_LOG]: 't/ns/sweep', [CUSTOM_ROLE]: 'data' },
  });
  await orphan.close();
  const young = await f.sweepOrphans({ log: 't/ns/sweep' });
  t.deepEqual(young.deleted, [], 'young ledgers are left alone');
  const res = await f.sweepOrphans({ log: 't/ns/sweep', graceMs: 0 });
  t.deepEqual(res.deleted, [orphan.ledgerId]);
  t.is(log.stats().entries, 3);
});

async function eventually(check: () => boolean | Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test.serial(
  'offload - a failing cold tier is retried with backoff while the log keeps working',
  async (t) => {
    const real = rig.offloader.offload.bind(rig.offloader);
    let down = true;
    let attempts = 0;
    rig.offloader.offload = async (source, options) => {
      attempts++;
      if (down) throw new UnavailableError('S3 endpoint refused the connection');
      return real(source, options);
    };
    const log = await rig
      .factory()
      .open('t/ns/offretry', { maxEntriesPerLedger: 5, offloadThresholdBytes: 0 });
    await fill(log, 12);
    await eventually(() => attempts >= 2, 'offload retried');
    t.is(log.stats().ledgers.filter((l) => l.offloaded).length, 0);
    const more = await fill(log, 3, 'late');
    t.is((await log.read(more[0]!, 3)).length, 3, 'the log keeps serving from bookies');
    down = false;
    await eventually(
      () => log.stats().ledgers.filter((l) => l.offloaded).length >= 2,
      'offload after recovery',
    );
    t.pass();
  },
);

test.serial('rollover - by age once the ledger is old enough', async (t) => {
  const clock = new ManualClock(Date.now());
  const log = await rig.factory({ clock }).open('t/ns/age', { maxLedgerAgeMs: 1000, minLedgerAgeMs: 0 });
  await fill(log, 2);
  clock.advance(500);
  t.is(log.stats().ledgers.length, 1);
  clock.advance(600);
  await eventually(() => log.stats().ledgers.length === 2, 'age rollover');
  const [sealed] = log.stats().ledgers;
  t.is(sealed!.entries, 2);
  t.false(sealed!.open);
});

test.serial('delete - removes the list, cursors and every ledger', async (t) => {
  const log = await rig.factory().open('t/ns/del', { maxEntriesPerLedger: 4 });
  const c = await log.openCursor('sub', 'earliest');
  const ps = await fill(log, 10);
  c.ack(ps[3]!);
  await c.flush();
  await log.offloadNow();
  await log.delete();
  t.deepEqual([...(await ledgersOf('t/ns/del'))], []);
  t.is(await new LedgerListStore(rig.metadata, 't/ns/del').read(), undefined);
  t.deepEqual(await rig.metadata.listAll('cursors/t/ns/del/'), []);
  t.deepEqual(await rig.offloader.list(), []);
});

/** A log where cursor 'a-fast' consumed all 23 entries (5 ledgers) and 'b-behind' only the first. */
async function laggingCursor(name: string): Promise<Position[]> {
  const log = await rig.factory().open(name, { maxEntriesPerLedger: 5 });
  const fast = await log.openCursor('a-fast', 'earliest');
  const behind = await log.openCursor('b-behind', 'earliest');
  const ps = await fill(log, 23);
  fast.ackCumulative(ps[22]!);
  behind.ack(ps[0]!);
  await behind.flush();
  await fast.flush();
  await log.close();
  return ps;
}

/** A ledger client whose recovery of `cursor`'s ledger takes `delayMs` (and then fails, with `fail`). */
function slowCursorLoads(cursor: string, delayMs: number, fail: boolean): BookKeeperClient {
  const client = rig.otherClient();
  const openLedger = client.openLedger.bind(client);
  client.openLedger = async (id, o) => {
    const md = await client.getLedgerMetadata(id);
    if (o?.recover && md?.custom[CUSTOM_CURSOR] === cursor) {
      await new Promise((r) => setTimeout(r, delayMs));
      if (fail) throw new UnavailableError('recovery of the cursor ledger timed out (injected)');
    }
    return openLedger(id, o);
  };
  return client;
}

/** A factory whose maintenance tick runs every 20 ms. */
function tickingFactory(t: ExecutionContext, ledgers: BookKeeperClient): ManagedLogFactory {
  const f = new ManagedLogFactory({
    metadata: rig.metadata,
    ledgers,
    clock: systemClock,
    defaults: { ...FAST, maxEntriesPerLedger: 5, maintenanceIntervalMs: 20 },
  });
  t.teardown(() => f.close());
  return f;
}

test.serial('trim - nothing is trimmed until every persisted cursor is loaded', async (t) => {
  const name = 't/ns/trim-load';
  const ps = await laggingCursor(name);
  // Loading b-behind takes many maintenance intervals.
  const log = await tickingFactory(t, slowCursorLoads('b-behind', 400, false)).open(name);
  t.deepEqual(log.firstPosition(), ps[0], 'the entries b-behind has not consumed are all there');
  const behind = await log.openCursor('b-behind');
  t.is(behind.backlog(), 22);
  t.is((await log.read(behind.readPosition, 100)).length, 22);
  // Once loaded, the tick runs: what every cursor consumed goes.
  behind.ackCumulative(ps[22]!);
  await eventually(() => log.stats().ledgers.length === 1, 'trim by the maintenance tick');
  t.true(log.stats().ledgers[0]!.open);
});

test.serial('trim - an open that fails to load a cursor has trimmed nothing', async (t) => {
  const name = 't/ns/trim-load-fails';
  const ps = await laggingCursor(name);
  const before = (await new LedgerListStore(rig.metadata, name).read())!.list.ledgers;
  await t.throwsAsync(tickingFactory(t, slowCursorLoads('b-behind', 400, true)).open(name), {
    instanceOf: UnavailableError,
  });
  const after = (await new LedgerListStore(rig.metadata, name).read())!.list;
  t.deepEqual(
    after.ledgers.map((l) => [l.ledgerId, l.entries]),
    before.map((l) => [l.ledgerId, l.entries]),
  );
  const again = await rig.factory().open(name);
  t.is((await again.read(ps[0]!, 100)).length, 23, 'every entry is still readable');
});

/** The new owner's list, cursor and ledgers are untouched and it keeps working. */
async function newOwnerIntact(
  t: ExecutionContext,
  name: string,
  owner: ManagedLog,
  cursor: Cursor,
  entries: number,
): Promise<void> {
  const list = (await new LedgerListStore(rig.metadata, name).read())?.list;
  t.truthy(list, 'the list is there');
  t.deepEqual(list!.trash, [], 'nothing was trashed');
  for (const l of list!.ledgers)
    t.truthy(await rig.ledgers.getLedgerMetadata(l.ledgerId), `ledger ${l.ledgerId}`);
  t.truthy(await rig.metadata.get(cursorKey(name, 'sub')), 'the cursor snapshot is there');
  t.is((await owner.read(cursor.readPosition, 100)).length, entries);
  await owner.append(Buffer.from('after'));
  t.false(owner.fenced);
}

test.serial("delete - a fenced owner refuses and leaves the new owner's log and cursors", async (t) => {
  const name = 't/ns/del-fenced';
  const stale = await rig.factory().open(name);
  await stale.append(Buffer.from('from-stale'));
  await stale.openCursor('sub', 'earliest');
  const owner = await rig.factory().open(name);
  const cursor = await owner.openCursor('sub', 'earliest');
  await fill(owner, 3);
  await t.throwsAsync(stale.append(Buffer.from('late')), { instanceOf: FencedError });
  t.true(stale.fenced);
  await t.throwsAsync(stale.delete(), { instanceOf: FencedError, message: /cannot delete/ });
  await newOwnerIntact(t, name, owner, cursor, 4);
});

test.serial('delete - a stale owner that has not noticed the takeover deletes nothing', async (t) => {
  const name = 't/ns/del-stale';
  const stale = await rig.factory().open(name);
  await stale.append(Buffer.from('from-stale'));
  await stale.openCursor('sub', 'earliest');
  const owner = await rig.factory().open(name);
  const cursor = await owner.openCursor('sub', 'earliest');
  await fill(owner, 3);
  t.false(stale.fenced);
  await t.throwsAsync(stale.delete(), { instanceOf: FencedError, message: /cannot delete/ });
  await newOwnerIntact(t, name, owner, cursor, 4);
});

test.serial('delete - a cursor snapshot another owner rewrote is not deleted', async (t) => {
  const name = 't/ns/del-cursor-stale';
  const stale = await rig.factory().open(name);
  const ps = await fill(stale, 3);
  await stale.openCursor('sub', 'earliest');
  const owner = await rig.factory().open(name);
  const cursor = await owner.openCursor('sub', 'earliest');
  cursor.ack(ps[0]!);
  await cursor.flush();
  const snapshot = await rig.metadata.get(cursorKey(name, 'sub'));
  t.false(stale.fenced);
  await t.throwsAsync(stale.deleteCursor('sub'), { instanceOf: FencedError });
  t.true(stale.fenced, 'the stale owner learnt it lost the log');
  t.deepEqual(await rig.metadata.get(cursorKey(name, 'sub')), snapshot, 'the snapshot is untouched');
  await owner.close();
  const again = await rig.factory().open(name);
  const back = await again.openCursor('sub');
  t.deepEqual(back.markDelete, ps[0], "the new owner's acks survived");
});

test.serial(
  'offload - reading a ledger whose only copy is offloaded, with no offloader configured, names the missing setting',
  async (t) => {
    const log = await rig
      .factory()
      .open('t/ns/nooffloader', { maxEntriesPerLedger: 5, offloadDeletionLagMs: 0 });
    const ps = await fill(log, 7);
    t.is(await log.offloadNow(), 1);
    t.true(log.stats().ledgers[0]!.bookieCopyDeleted);
    await log.close();
    const bare = await rig.factory({ offload: false }).open('t/ns/nooffloader');
    await t.throwsAsync(bare.read(ps[0]!, 5), {
      instanceOf: FailedPreconditionError,
      message: new RegExp(`ledger ${ps[0]!.ledgerId} .*no offloader is configured`),
    });
    t.deepEqual(
      (await bare.read(ps[5]!, 5)).map((e) => e.payload.toString()),
      ['m5', 'm6'],
      'ledgers still on bookies read as before',
    );
  },
);

interface Maintenance {
  offload(all: boolean): Promise<number>;
  idle(): Promise<void>;
}

test.serial(
  'offload - a ledger that fails for a reason of its own is skipped and backed off; later ledgers are offloaded',
  async (t) => {
    const real = rig.offloader.offload.bind(rig.offloader);
    const attempts = new Map<LedgerId, number>();
    let bad: LedgerId | undefined;
    rig.offloader.offload = async (source, options) => {
      bad ??= source.ledgerId;
      attempts.set(source.ledgerId, (attempts.get(source.ledgerId) ?? 0) + 1);
      if (source.ledgerId === bad) throw new CorruptDataError(`ledger ${bad} returned a corrupt entry`);
      return real(source, options);
    };
    const log = await rig
      .factory()
      .open('t/ns/offbad', { maxEntriesPerLedger: 5, offloadThresholdBytes: 0, retentionTimeMs: -1 });
    const ps = await fill(log, 17);
    const sealed = () => log.stats().ledgers.filter((l) => !l.open);
    const maintenance = (log as unknown as { maintenance: Maintenance }).maintenance;
    // Rollovers started passes while the appends ran; one more sees every sealed ledger.
    await maintenance.idle();
    await maintenance.offload(false);
    t.deepEqual(
      sealed().map((l) => l.offloaded),
      [false, true, true],
      'the ledgers after the bad one are offloaded',
    );
    t.is(bad, ps[0]!.ledgerId, 'the oldest ledger is the bad one');
    t.false(sealed()[0]!.offloaded);
    await maintenance.offload(false);
    await maintenance.offload(false);
    t.is(attempts.get(bad!), 1, 'passes during its backoff do not retry it');
    t.deepEqual(
      (await log.read(ps[0]!, 17)).map((e) => e.payload.toString()),
      Array.from({ length: 17 }, (_, i) => `m${i}`),
    );
  },
);

test.serial('offload - an unreachable cold tier stops each pass at its first ledger', async (t) => {
  const tried: LedgerId[] = [];
  rig.offloader.offload = async (source) => {
    tried.push(source.ledgerId);
    throw new UnavailableError('S3 endpoint refused the connection');
  };
  // A manual clock: the pass's retry timer never fires on its own.
  const clock = new ManualClock(Date.now());
  const log = await rig
    .factory({ clock })
    .open('t/ns/offdown', { maxEntriesPerLedger: 5, retentionTimeMs: -1 });
  const ps = await fill(log, 17);
  const maintenance = (log as unknown as { maintenance: Maintenance }).maintenance;
  t.is(await maintenance.offload(false), 0, 'the policy is off: nothing to do');
  await t.throwsAsync(log.offloadNow(), { instanceOf: UnavailableError });
  t.deepEqual(tried, [ps[0]!.ledgerId], 'one attempt, not one per ledger');
});

test.serial(
  'offload - a bookie copy is deleted only after its offload verifies; a damaged offload is redone',
  async (t) => {
    const real = rig.offloader.offload.bind(rig.offloader);
    const damage: ((res: OffloadResult) => Promise<void>)[] = [
      // The data object lost its last byte.
      (res) => truncate(join(rig.dir, 'offload', res.dataKey), res.dataBytes - 1),
      // The index object has a flipped bit.
      async (res) => {
        const path = join(rig.dir, 'offload', res.indexKey);
        const bytes = await readFile(path);
        bytes[20]! ^= 1;
        await writeFile(path, bytes);
      },
    ];
    rig.offloader.offload = async (source, options) => {
      const res = await real(source, options);
      await damage.shift()?.(res);
      return res;
    };
    const log = await rig
      .factory()
      .open('t/ns/offverify', { maxEntriesPerLedger: 5, offloadDeletionLagMs: 0, retentionTimeMs: -1 });
    const ps = await fill(log, 12);
    const sealed = () => log.stats().ledgers.filter((l) => !l.open);
    await log.offloadNow();
    t.deepEqual(
      sealed().map((l) => [l.offloaded, l.bookieCopyDeleted]),
      [
        [false, false],
        [false, false],
      ],
      'neither damaged offload counts; both bookie copies stay',
    );
    for (const l of sealed()) t.is((await rig.ledgers.getLedgerMetadata(l.ledgerId))?.state, 'CLOSED');
    t.deepEqual(await rig.offloader.list(), [], 'the damaged objects are deleted');
    t.is(await log.offloadNow(), 2, 'the next pass offloads both again');
    t.deepEqual(
      sealed().map((l) => [l.offloaded, l.bookieCopyDeleted]),
      [
        [true, true],
        [true, true],
      ],
    );
    t.deepEqual(
      (await log.read(ps[0]!, 12)).map((e) => e.payload.toString()),
      Array.from({ length: 12 }, (_, i) => `m${i}`),
    );
  },
);
