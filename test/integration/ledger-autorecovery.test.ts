import { Auditor, GrpcBookieClient } from '@sluice/ledger';
import test from 'ava';
import { waitFor } from '../support/ports.js';
import { LedgerCluster } from './ledger-cluster.js';

test('ledger - autorecovery restores Qw copies after a bookie is removed for good', async (t) => {
  const c = await LedgerCluster.start('ledger-autorecovery', 4);
  t.teardown(() => c.stop());
  const client = c.client();
  const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 });
  const payloads = Array.from({ length: 50 }, (_, i) => Buffer.alloc(1000 + i, `e${i}|`));
  await Promise.all(payloads.map((p) => w.addEntry(p)));
  const closed = await w.close();
  const ensemble = closed.segments[0]?.bookies ?? [];
  const lost = ensemble[0] as string;
  const spare = [...c.byId.keys()].find((id) => !ensemble.includes(id)) as string;
  c.byId.get(lost)?.kill('SIGKILL');

  const auditors = [0, 1].map(
    (i) =>
      new Auditor({
        metadata: c.metadata,
        gracePeriodMs: 1000,
        auditIntervalMs: 500,
        sessionTtlMs: 2000,
        name: `auditor-${i}`,
      }),
  );
  for (const a of auditors) {
    t.teardown(() => a.close());
    await a.start();
  }
  await waitFor(
    async () => {
      const m = await client.getLedgerMetadata(w.ledgerId);
      return m?.segments[0]?.bookies[0] === spare;
    },
    30_000,
    'the lost bookie replaced in the metadata',
  );
  t.is(auditors.filter((a) => a.isLeader).length, 1, 'exactly one auditor leads');
  const info = (await c.registered()).find((b) => b.bookieId === spare);
  const direct = new GrpcBookieClient(spare, info?.address as string);
  t.teardown(() => direct.close());
  const range = await direct.readRange(w.ledgerId, 0, 49);
  t.is(range.entries.length, 50, 'the replacement holds every entry of the fragment');
  for (const [i, e] of range.entries.entries()) t.true(e.payload.equals(payloads[i] as Buffer));

  const r = await c.client().openLedger(w.ledgerId);
  const entries = await r.read(0, 49);
  t.is(entries.length, 50);
  t.is(r.metadata.segments[0]?.bookies.includes(lost), false);
});
