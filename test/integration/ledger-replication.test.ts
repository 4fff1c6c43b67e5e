import { FencedError, UnavailableError } from '@sluice/common';
import type { LedgerWriter } from '@sluice/ledger';
import test from 'ava';
import { TcpProxy } from '../support/tcp-proxy.js';
import { LedgerCluster } from './ledger-cluster.js';

const body = (i: number) => Buffer.alloc(512 + (i % 13), `entry-${i}|`);

/** Adds in a loop (a few in flight) until stopped or an add fails; records every acknowledged entry. */
function writeLoop(w: LedgerWriter, from = 0) {
  const acked = new Map<number, Buffer>();
  let stop = false;
  let next = from;
  let failure: unknown;
  const one = async (): Promise<void> => {
    while (!stop && failure === undefined) {
      const p = body(next++);
      try {
        acked.set(await w.addEntry(p), p);
      } catch (err) {
        failure ??= err;
      }
    }
  };
  const done = Promise.all([one(), one(), one(), one()]);
  return {
    acked,
    get failure() {
      return failure;
    },
    async stop() {
      stop = true;
      await done;
    },
    done,
  };
}

test('ledger - kill -9 of a bookie mid-stream loses no acknowledged entry and writes continue', async (t) => {
  const c = await LedgerCluster.start('ledger-kill', 4);
  t.teardown(() => c.stop());
  const client = c.client();
  const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 });
  const loop = writeLoop(w);
  await new Promise((r) => setTimeout(r, 500));
  const victimId = w.metadata.segments[0]?.bookies[1] as string;
  const victim = c.byId.get(victimId);
  t.truthy(victim, 'the victim is one of our bookie processes');
  const beforeKill = loop.acked.size;
  victim?.kill('SIGKILL');
  await new Promise((r) => setTimeout(r, 1500));
  await loop.stop();
  t.is(loop.failure, undefined, `writes kept going: ${String(loop.failure)}`);
  const total = loop.acked.size;
  t.true(total > beforeKill + 10, `acked ${beforeKill} before the kill, ${total} in all`);
  t.true(w.metadata.segments.length >= 2, 'the ensemble changed');
  t.false(w.metadata.segments.at(-1)?.bookies.includes(victimId));
  const closed = await w.close();
  t.is(closed.lastEntryId, total - 1);

  const r = await c.client().openLedger(w.ledgerId);
  const entries = await r.read(0, closed.lastEntryId);
  t.is(entries.length, total);
  for (const e of entries)
    t.true(e.payload.equals(loop.acked.get(e.entryId) as Buffer), `entry ${e.entryId}`);
});

test('ledger - a lost fence request cannot let the old writer commit past recovery', async (t) => {
  const c = await LedgerCluster.start('ledger-fence', 3);
  t.teardown(() => c.stop());
  const old = c.client();
  const w = await old.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 });
  const target = w.metadata.segments[0]?.bookies[2] as string;
  const proc = c.byId.get(target);
  if (!proc) throw new Error('bookie process not found');
  const proxy = await TcpProxy.start('127.0.0.1', proc.port);
  t.teardown(() => proxy.close());
  // The recovering client reaches `target` only through the proxy, which loses its first request: the fence.
  proxy.dropNextRequests(1);
  const recovering = c.client({ directory: c.directoryVia(target, proxy.address), readTimeoutMs: 1000 });

  const loop = writeLoop(w);
  await new Promise((r) => setTimeout(r, 500));
  const reader = await recovering.openLedger(w.ledgerId, { recover: true });
  await Promise.race([loop.done, new Promise((r) => setTimeout(r, 10_000))]);
  await loop.stop();
  t.is(proxy.droppedCalls, 1, 'the fence to one bookie was lost');
  t.true(loop.failure instanceof FencedError, `the old writer was fenced: ${String(loop.failure)}`);
  await t.throwsAsync(w.addEntry(Buffer.from('late')), { instanceOf: FencedError });

  const m = reader.metadata;
  t.is(m.state, 'CLOSED');
  const ackedIds = [...loop.acked.keys()];
  t.true(ackedIds.length > 0);
  t.true(Math.max(...ackedIds) <= m.lastEntryId, 'every acknowledged entry is inside the recovered ledger');
  const entries = await reader.read(0, m.lastEntryId);
  for (const e of entries) {
    const sent = loop.acked.get(e.entryId);
    if (sent) t.true(e.payload.equals(sent), `entry ${e.entryId} has the acknowledged bytes`);
  }
  t.is(
    m.length,
    entries.reduce((n, e) => n + e.payload.length, 0),
  );
});

test('ledger - with no bookie to replace a dead one adds fail UNAVAILABLE and acknowledged entries stay', async (t) => {
  const c = await LedgerCluster.start('ledger-unavail', 3);
  t.teardown(() => c.stop());
  const w = await c.client().createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 });
  const acked: number[] = [];
  for (let i = 0; i < 20; i++) acked.push(await w.addEntry(body(i)));
  c.byId.get(w.metadata.segments[0]?.bookies[0] as string)?.kill('SIGKILL');
  // An add may still reach Qa on the two survivors before the writer learns of the death.
  let failure: unknown;
  for (let i = 20; i < 60 && failure === undefined; i++) {
    await w.addEntry(body(i)).then(
      (id) => acked.push(id),
      (err: unknown) => {
        failure = err;
      },
    );
  }
  t.true(failure instanceof UnavailableError, `adds fail UNAVAILABLE: ${String(failure)}`);
  const r = await c.client().openLedger(w.ledgerId, { recover: true });
  t.true(r.metadata.lastEntryId >= acked.length - 1);
  const entries = await r.read(0, acked.length - 1);
  for (const [i, e] of entries.entries()) t.true(e.payload.equals(body(i)));
});
