import { systemClock, UnavailableError } from '@sluice/common';
import type { BookKeeperClient } from '@sluice/ledger';
import test, { type ExecutionContext } from 'ava';
import { LedgerListStore } from './ledger-list.js';
import { ManagedLogFactory } from './managed-log-factory.js';
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
