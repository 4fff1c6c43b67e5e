import {
  ClosedError,
  CorruptDataError,
  InvalidArgumentError,
  type LedgerId,
  ManualClock,
  systemClock,
  UnavailableError,
} from '@sluice/common';
import { type BookKeeperClient, MAX_ENTRY_BYTES } from '@sluice/ledger';
import type { MetadataStore } from '@sluice/metadata';
import test, { type ExecutionContext } from 'ava';
import type { ManagedLog } from './api.js';
import { LedgerListStore } from './ledger-list.js';
import { CUSTOM_LOG, logKey } from './log-keys.js';
import { SPARE_MAX_AGE_MS } from './log-writer.js';
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

/** A ledger client whose writers fail their next `closes` close() calls without closing. */
function flakyCloses(client: BookKeeperClient, state: { closes: number; recoveries: number }) {
  const create = client.createLedger.bind(client);
  client.createLedger = async (o) => {
    const w = await create(o);
    const close = w.close.bind(w);
    w.close = async () => {
      if (state.closes-- > 0) throw new UnavailableError('metadata store unreachable (injected)');
      return close();
    };
    return w;
  };
  const openLedger = client.openLedger.bind(client);
  client.openLedger = async (id, o) => {
    if (o?.recover && state.recoveries-- > 0) throw new UnavailableError('bookies unreachable (injected)');
    return openLedger(id, o);
  };
}

function factory(t: ExecutionContext, client: BookKeeperClient): ManagedLogFactory {
  const f = new ManagedLogFactory({
    metadata: rig.metadata,
    ledgers: client,
    clock: systemClock,
    defaults: FAST,
  });
  t.teardown(() => f.close());
  return f;
}

async function listed(name: string, ledgerId: number) {
  return (await new LedgerListStore(rig.metadata, name).read())?.list.ledgers.find(
    (l) => l.ledgerId === ledgerId,
  );
}

const payload = (i: number) => Buffer.from(`entry-${i}`);

test.serial(
  'log writer - a rollover whose close fails recovers the ledger before recording it sealed',
  async (t) => {
    const client = rig.otherClient();
    const faults = { closes: 1, recoveries: 0 };
    flakyCloses(client, faults);
    const f = factory(t, client);
    const log = await f.open('t/ns/close-fails', { maxEntriesPerLedger: 5 });
    const positions = await Promise.all(Array.from({ length: 10 }, (_, i) => log.append(payload(i))));
    t.is(faults.closes, 0, 'the injected close failure happened');
    const first = positions[0]!.ledgerId;
    const rec = await listed('t/ns/close-fails', first);
    t.true(rec?.sealed);
    t.is(rec?.entries, 5);
    const m = await rig.ledgers.getLedgerMetadata(first);
    t.is(m?.state, 'CLOSED', 'sealed in the list only once the ledger metadata is closed');
    t.is(m?.lastEntryId, 4);
    await log.close();
    const again = await rig.factory().open('t/ns/close-fails');
    const back = await again.read({ ledgerId: first, entryId: 0 }, 5);
    t.deepEqual(
      back.map((e) => e.payload.toString()),
      Array.from({ length: 5 }, (_, i) => `entry-${i}`),
      'the last acknowledged entry of the ledger is readable',
    );
  },
);

test.serial(
  'log writer - when neither close nor recovery works the ledger stays unsealed and a later append rolls over',
  async (t) => {
    const client = rig.otherClient();
    const faults = { closes: 1, recoveries: 1 };
    flakyCloses(client, faults);
    const f = factory(t, client);
    const log = await f.open('t/ns/seal-fails', { maxEntriesPerLedger: 3 });
    const first = await Promise.all(Array.from({ length: 3 }, (_, i) => log.append(payload(i))));
    const ledger = first[0]!.ledgerId;
    await t.throwsAsync(log.append(payload(3)), { instanceOf: UnavailableError });
    t.false((await listed('t/ns/seal-fails', ledger))?.sealed, 'never sealed on a guess');
    t.is((await rig.ledgers.getLedgerMetadata(ledger))?.state, 'OPEN');
    const later = await log.append(payload(3));
    t.not(later.ledgerId, ledger);
    const rec = await listed('t/ns/seal-fails', ledger);
    t.true(rec?.sealed);
    t.is(rec?.entries, 3);
    t.is((await rig.ledgers.getLedgerMetadata(ledger))?.state, 'CLOSED');
    await log.close();
  },
);

/** `p`, or a rejection once it has been pending `ms` (a hang fails the test instead of timing it out). */
function within<T>(ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** Every ledger in metadata whose custom names `log`. */
async function ledgersOf(log: string): Promise<LedgerId[]> {
  const out: LedgerId[] = [];
  for (const { key } of await rig.metadata.listAll('ledgers/', { keysOnly: true })) {
    const id = Number(key.slice(key.lastIndexOf('/') + 1));
    if (!Number.isSafeInteger(id)) continue;
    const md = await rig.ledgers.getLedgerMetadata(id);
    if (md?.custom[CUSTOM_LOG] === log) out.push(id);
  }
  return out.sort((a, b) => a - b);
}

async function readBack(log: ManagedLog): Promise<string[]> {
  const first = log.firstPosition();
  return first ? (await log.read(first, 1000)).map((e) => e.payload.toString()) : [];
}

/** Fail the next `times` writes of `key` (before they land) with UnavailableError. */
function failPuts(metadata: MetadataStore, key: string, times: number): void {
  const put = metadata.put.bind(metadata);
  metadata.put = async (k, value, opts) => {
    if (k === key && times-- > 0) throw new UnavailableError('metadata store unreachable (injected)');
    return put(k, value, opts);
  };
}

test.serial(
  'log writer - an append over the ledger entry limit is refused up front; the appends around it land once, in order',
  async (t) => {
    const name = 't/ns/oversize';
    const log = await rig.factory().open(name);
    const before = Array.from({ length: 5 }, (_, i) => log.append(payload(i)));
    const big = log.append(Buffer.alloc(MAX_ENTRY_BYTES + 1));
    const bigParts = log.append([Buffer.alloc(MAX_ENTRY_BYTES), Buffer.alloc(1)]);
    const after = log.append(payload(5));
    await t.throwsAsync(within(5000, big), { instanceOf: InvalidArgumentError, message: /exceeds/ });
    await t.throwsAsync(within(5000, bigParts), { instanceOf: InvalidArgumentError });
    const positions = await within(5000, Promise.all([...before, after]));
    const ledgerId = positions[0]!.ledgerId;
    t.deepEqual(
      positions,
      Array.from({ length: 6 }, (_, i) => ({ ledgerId, entryId: i })),
      'one ledger, consecutive entries, in append order',
    );
    t.is(log.stats().ledgers.length, 1, 'no rollover');
    t.deepEqual(
      await readBack(log),
      Array.from({ length: 6 }, (_, i) => `entry-${i}`),
    );
    // The largest allowed entry is stored.
    const max = await within(5000, log.append(Buffer.alloc(MAX_ENTRY_BYTES)));
    t.is(max.ledgerId, ledgerId);
  },
);

test.serial('log writer - an entry the ledger refuses fails only that append, not the ledger', async (t) => {
  // The writers refuse entries over 1 KiB, a limit the client does not
  // report: the log's own check lets them through to the ledger.
  const client = rig.otherClient({ maxEntryBytes: 1024 });
  Object.defineProperty(client, 'maxEntryBytes', { value: undefined });
  const f = factory(t, client);
  const log = await f.open('t/ns/refused');
  const before = Array.from({ length: 3 }, (_, i) => log.append(payload(i)));
  const big = log.append(Buffer.alloc(2048));
  const after = Array.from({ length: 3 }, (_, i) => log.append(payload(3 + i)));
  await t.throwsAsync(within(5000, big), { instanceOf: InvalidArgumentError });
  const positions = await within(5000, Promise.all([...before, ...after]));
  const ledgerId = positions[0]!.ledgerId;
  t.deepEqual(
    positions,
    Array.from({ length: 6 }, (_, i) => ({ ledgerId, entryId: i })),
  );
  t.is(log.stats().ledgers.length, 1, 'the ledger was not rolled over');
  t.deepEqual(
    await readBack(log),
    Array.from({ length: 6 }, (_, i) => `entry-${i}`),
    'nothing twice, nothing out of order',
  );
  await log.close();
});

test.serial(
  'log writer - a rollover whose list update fails transiently is retried by the next append',
  async (t) => {
    const name = 't/ns/list-fails';
    const log = await rig.factory().open(name, { maxEntriesPerLedger: 2 });
    const [a] = await Promise.all([log.append(payload(0)), log.append(payload(1))]);
    failPuts(rig.metadata, logKey(name), 1);
    await t.throwsAsync(within(5000, log.append(payload(2))), { instanceOf: UnavailableError });
    const d = await within(5000, log.append(payload(3)));
    t.not(d.ledgerId, a!.ledgerId);
    const rec = await listed(name, a!.ledgerId);
    t.true(rec?.sealed);
    t.is(rec?.entries, 2);
    t.deepEqual(await readBack(log), ['entry-0', 'entry-1', 'entry-3']);
    await log.close();
    t.deepEqual(
      await ledgersOf(name),
      [...(await referencedLedgers(rig.metadata, name))].sort((x, y) => x - y),
      'the failed attempt left no ledger behind',
    );
  },
);

test.serial(
  'log writer - a rollover whose list write landed unseen records its new ledger once',
  async (t) => {
    const name = 't/ns/list-unsure';
    const log = await rig.factory().open(name, { maxEntriesPerLedger: 2 });
    const [a] = await Promise.all([log.append(payload(0)), log.append(payload(1))]);
    // The next list write commits but its answer is lost, and so is the read-back.
    const key = logKey(name);
    const put = rig.metadata.put.bind(rig.metadata);
    const get = rig.metadata.get.bind(rig.metadata);
    let stage: 'put' | 'get' | 'done' = 'put';
    rig.metadata.put = async (k, value, opts) => {
      const v = await put(k, value, opts);
      if (k === key && stage === 'put') {
        stage = 'get';
        throw new UnavailableError('answer lost (injected)');
      }
      return v;
    };
    rig.metadata.get = async (k) => {
      if (k === key && stage === 'get') {
        stage = 'done';
        throw new UnavailableError('read-back failed (injected)');
      }
      return get(k);
    };
    await t.throwsAsync(within(5000, log.append(payload(2))), { instanceOf: UnavailableError });
    const d = await within(5000, log.append(payload(3)));
    const list = (await new LedgerListStore(rig.metadata, name).read())!.list;
    t.deepEqual(
      list.ledgers.map((l) => [l.ledgerId, l.sealed]),
      [
        [a!.ledgerId, true],
        [d.ledgerId, false],
      ],
      'the ledger recorded by the unseen write is the one appended to, listed once',
    );
    t.deepEqual(await readBack(log), ['entry-0', 'entry-1', 'entry-3']);
    await log.close();
    t.deepEqual(
      await ledgersOf(name),
      [...(await referencedLedgers(rig.metadata, name))].sort((x, y) => x - y),
    );
  },
);

test.serial('log writer - close during a rollover waits for it and leaves no ledger behind', async (t) => {
  const name = 't/ns/close-rolling';
  const log = await rig.factory().open(name, { maxEntriesPerLedger: 2 });
  // Ledgers fill at 2 entries: a rollover starts at once, and another is due
  // when it completes (its new ledger fills from the queue right away).
  const appends = Array.from({ length: 10 }, (_, i) =>
    log.append(payload(i)).then(
      (p) => p,
      (err: unknown) => err,
    ),
  );
  await within(5000, log.close());
  const results = await within(5000, Promise.all(appends));
  for (const r of results) {
    if (r instanceof Error) t.true(r instanceof ClosedError, String(r));
  }
  const list = (await new LedgerListStore(rig.metadata, name).read())!.list;
  t.true(
    list.ledgers.every((l) => l.sealed),
    'every listed ledger is sealed',
  );
  // Give a rollover left running the time to create its ledger.
  await new Promise((r) => setTimeout(r, 100));
  t.deepEqual(
    await ledgersOf(name),
    [...(await referencedLedgers(rig.metadata, name))].sort((x, y) => x - y),
    'no ledger of an abandoned rollover is left behind',
  );
});

test.serial(
  'log writer - a ledger kept from a failed rollover that the orphan sweeper deleted is not reused; every acknowledged entry survives a reopen',
  async (t) => {
    const name = 't/ns/spare-swept';
    const f = rig.factory();
    const log = await f.open(name, { maxEntriesPerLedger: 3 });
    await within(5000, Promise.all([0, 1, 2].map((i) => log.append(payload(i)))));
    // The rollover's list write fails: the ledger it created is kept, unlisted.
    failPuts(rig.metadata, logKey(name), 1);
    await t.throwsAsync(within(5000, log.append(payload(3))), { instanceOf: UnavailableError });
    // Past the grace period (graceMs 0 stands for it) the sweeper deletes that unlisted ledger.
    const swept = await f.sweepOrphans({ log: name, graceMs: 0 });
    t.is(swept.deleted.length, 1);
    const later = await within(5000, Promise.all([4, 5].map((i) => log.append(payload(i)))));
    t.false(swept.deleted.includes(later[0]!.ledgerId), 'appends go to a ledger that still exists');
    t.is((await rig.ledgers.getLedgerMetadata(later[0]!.ledgerId))?.state, 'OPEN');
    await log.close();
    const again = await rig.factory().open(name);
    t.deepEqual(await readBack(again), ['entry-0', 'entry-1', 'entry-2', 'entry-4', 'entry-5']);
    await again.close();
  },
);

test.serial(
  'log writer - a ledger kept from a failed rollover is not reused once the sweeper may take it; it goes to the trash',
  async (t) => {
    const clock = new ManualClock(Date.now());
    const name = 't/ns/spare-old';
    const log = await rig.factory({ clock }).open(name, { maxEntriesPerLedger: 2 });
    await within(5000, Promise.all([0, 1].map((i) => log.append(payload(i)))));
    const before = await ledgersOf(name);
    failPuts(rig.metadata, logKey(name), 1);
    await t.throwsAsync(within(5000, log.append(payload(2))), { instanceOf: UnavailableError });
    const [spare, ...more] = (await ledgersOf(name)).filter((id) => !before.includes(id));
    t.truthy(spare);
    t.deepEqual(more, []);
    clock.advance(SPARE_MAX_AGE_MS + 60_000);
    const p = await within(5000, log.append(payload(3)));
    t.not(p.ledgerId, spare, 'a new ledger, not the old spare');
    const list = (await new LedgerListStore(rig.metadata, name).read())!.list;
    t.false(list.ledgers.some((l) => l.ledgerId === spare));
    t.true(
      list.trash.some((tr) => tr.ledgerId === spare && tr.bookie),
      'the spare is in the trash',
    );
    t.deepEqual(await readBack(log), ['entry-0', 'entry-1', 'entry-3']);
    await (log as unknown as { maintain(): Promise<void> }).maintain();
    t.is(await rig.ledgers.getLedgerMetadata(spare!), undefined, 'and deleted by the next maintenance pass');
  },
);

test.serial(
  'log writer - an open ledger whose metadata vanished after acknowledging entries fails appends instead of dropping them',
  async (t) => {
    const name = 't/ns/lost';
    const log = await rig.factory().open(name, { maxEntriesPerLedger: 2 });
    const acked = await within(5000, Promise.all([0, 1].map((i) => log.append(payload(i)))));
    const ledgerId = acked[0]!.ledgerId;
    // What an orphan sweep racing a rollover that reused an unlisted ledger did.
    await rig.ledgers.deleteLedger(ledgerId);
    await t.throwsAsync(within(5000, log.append(payload(2))), {
      instanceOf: CorruptDataError,
      message: new RegExp(`ledger ${ledgerId} .* held 2 acknowledged entries`),
    });
    await t.throwsAsync(within(5000, log.append(payload(3))), { instanceOf: CorruptDataError });
    const rec = await listed(name, ledgerId);
    t.truthy(rec, 'the ledger is not moved to the trash');
    t.false(rec?.sealed);
    t.is(rec?.entries, 2, 'the list records how many entries were acknowledged');
    await log.close();
    await t.throwsAsync(
      rig.factory().open(name),
      { instanceOf: CorruptDataError, message: new RegExp(`ledger ${ledgerId}`) },
      'the next owner refuses to drop the ledger as empty',
    );
  },
);
