import type { MetadataStore, Session } from '@sluice/metadata';
import test from 'ava';
import { AUDITOR_ELECTION_PREFIX, Auditor } from './auditor.js';
import { LedgerMetadataStore } from './ledger-metadata-store.js';
import { MemoryCluster } from './testing/memory-cluster.js';

test('auditor - restores Qw copies of a gone bookie on a replacement and CASes it in', async (t) => {
  const c = await MemoryCluster.start(4);
  t.teardown(() => c.stop());
  const client = c.client();
  // Keep b4 out of the ensemble so it is the only replacement.
  c.unregister('b4');
  const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 });
  await Promise.all(Array.from({ length: 30 }, (_, i) => w.addEntry(Buffer.from(`e${i}`))));
  await w.close();
  const open = await client.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 });
  await open.addEntry(Buffer.from('tail'));
  c.directory.bookies.push({ bookieId: 'b4', address: 'memory:b4', readOnly: false });
  const lost = w.metadata.segments[0]?.bookies[1] as string;
  c.bookie(lost).crash();
  c.unregister(lost);
  const auditor = new Auditor({
    metadata: c.metadata,
    directory: c.directory,
    pool: c.pool,
    gracePeriodMs: 100,
  });
  t.teardown(() => auditor.close());
  const first = await auditor.runOnce();
  t.deepEqual(first.goneBookies, [], 'inside the grace period nothing happens');
  await new Promise((r) => setTimeout(r, 120));
  const report = await auditor.runOnce();
  t.deepEqual(report.goneBookies, [lost]);
  t.is(report.fragmentsReplicated, 1, 'the open ledger tail segment belongs to its writer');
  t.is(report.entriesCopied, 20);
  const m = (await new LedgerMetadataStore(c.metadata).readOrThrow(w.ledgerId)).metadata;
  t.deepEqual(m.segments[0]?.bookies[1], 'b4');
  const ensemble = m.segments[0]?.bookies ?? [];
  for (let e = 0; e < 30; e++) {
    const holders = [ensemble[e % 3], ensemble[(e + 1) % 3]];
    for (const h of holders)
      t.true(
        c
          .bookie(h as string)
          .storedEntries(w.ledgerId)
          .includes(e),
        `${h} holds ${e}`,
      );
  }
  const again = await auditor.runOnce();
  t.is(again.fragmentsReplicated, 0);
});

test('auditor - one leader at a time, the next takes over when it leaves', async (t) => {
  const c = await MemoryCluster.start(1);
  t.teardown(() => c.stop());
  const a = new Auditor({ metadata: c.metadata, directory: c.directory, pool: c.pool, sessionTtlMs: 2000 });
  const b = new Auditor({ metadata: c.metadata, directory: c.directory, pool: c.pool, sessionTtlMs: 2000 });
  t.teardown(() => b.close());
  await a.start();
  await b.start();
  const until = async (cond: () => boolean) => {
    for (let i = 0; i < 100 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
  };
  await until(() => a.isLeader || b.isLeader);
  t.true(a.isLeader !== b.isLeader);
  const [leader, follower] = a.isLeader ? [a, b] : [b, a];
  await leader.close();
  await until(() => follower.isLeader);
  t.true(follower.isLeader);
  await a.close();
});

test('auditor - dying midway leaves the metadata untouched and the next audit finishes the job', async (t) => {
  const c = await MemoryCluster.start(4);
  t.teardown(() => c.stop());
  c.unregister('b4');
  const w = await c.client().createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 });
  await Promise.all(Array.from({ length: 40 }, (_, i) => w.addEntry(Buffer.from(`e${i}`))));
  const closed = await w.close();
  c.directory.bookies.push({ bookieId: 'b4', address: 'memory:b4', readOnly: false });
  const lost = closed.segments[0]?.bookies[0] as string;
  c.bookie(lost).crash();
  c.unregister(lost);
  // The replacement dies after taking 10 copies: like an auditor killed midway, nothing is CASed.
  const b4 = c.bookie('b4');
  const add = b4.add.bind(b4);
  let copies = 0;
  b4.add = async (entry, recovery) => {
    if (++copies > 10) b4.crash();
    return add(entry, recovery);
  };
  const auditor = new Auditor({
    metadata: c.metadata,
    directory: c.directory,
    pool: c.pool,
    gracePeriodMs: 0,
  });
  t.teardown(() => auditor.close());
  const failed = await auditor.runOnce();
  t.is(failed.failures, 1);
  t.deepEqual((await c.client().getLedgerMetadata(w.ledgerId))?.segments, closed.segments);
  b4.add = add;
  b4.restart();
  const report = await auditor.runOnce();
  t.is(report.fragmentsReplicated, 1);
  t.is((await c.client().getLedgerMetadata(w.ledgerId))?.segments[0]?.bookies[0], 'b4');
  t.is(b4.storedEntries(w.ledgerId).length, 40);
});

test('auditor - after losing its session it campaigns again on a new one and keeps auditing', async (t) => {
  const c = await MemoryCluster.start(1);
  t.teardown(() => c.stop());
  const a = new Auditor({
    metadata: c.metadata,
    directory: c.directory,
    pool: c.pool,
    sessionTtlMs: 2000,
    auditIntervalMs: 20,
  });
  t.teardown(() => a.close());
  let audits = 0;
  const run = a.runOnce.bind(a);
  a.runOnce = async () => {
    audits++;
    return run();
  };
  const until = async (cond: () => boolean) => {
    for (let i = 0; i < 150 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
  };
  await a.start();
  await until(() => a.isLeader && audits > 1);
  t.true(a.isLeader);
  const first = (a as unknown as { session: { id: string } }).session.id;
  c.metadata.expireSession(first);
  t.false(a.isLeader);
  await until(() => a.isLeader);
  t.true(a.isLeader, 'leader again on a new session');
  t.not((a as unknown as { session: { id: string } }).session.id, first);
  const before = audits;
  await until(() => audits > before + 2);
  t.true(audits > before + 2, 'audits resume');
});

/** `c.metadata` counting createSession calls, for auditors that must not make sessions of their own. */
function countingSessions(c: MemoryCluster): { metadata: MetadataStore; created: () => number } {
  let created = 0;
  const metadata = new Proxy(c.metadata, {
    get(target, prop) {
      if (prop === 'createSession') {
        return (ttlMs: number) => {
          created++;
          return target.createSession(ttlMs);
        };
      }
      const value = (target as unknown as Record<string | symbol, unknown>)[prop];
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as unknown as MetadataStore;
  return { metadata, created: () => created };
}

/** A session whose close() is recorded. */
async function watchedSession(c: MemoryCluster): Promise<{ session: Session; closed: () => boolean }> {
  const session = await c.metadata.createSession(2000);
  let closed = false;
  const close = session.close.bind(session);
  Object.assign(session, {
    close: async () => {
      closed = true;
      await close();
    },
  });
  return { session, closed: () => closed };
}

const until = async (cond: () => boolean | Promise<boolean>) => {
  for (let i = 0; i < 150 && !(await cond()); i++) await new Promise((r) => setTimeout(r, 20));
};

test('auditor - with a shared session it creates none and leads on that session', async (t) => {
  const c = await MemoryCluster.start(1);
  t.teardown(() => c.stop());
  const { metadata, created } = countingSessions(c);
  const { session } = await watchedSession(c);
  const a = new Auditor({
    metadata,
    directory: c.directory,
    pool: c.pool,
    sharedSession: async () => session,
  });
  t.teardown(() => a.close());
  await a.start();
  await until(() => a.isLeader);
  t.true(a.isLeader);
  t.is(created(), 0, 'no session of its own');
  const key = await c.metadata.get(`${AUDITOR_ELECTION_PREFIX}${session.id}`);
  t.true(key?.ephemeral, 'the election key is on the shared lease');
  c.metadata.expireSession(session.id);
  t.false(a.isLeader, 'leadership ends with the shared session');
});

test('auditor - when the shared session is lost it campaigns again on the next one the source gives', async (t) => {
  const c = await MemoryCluster.start(1);
  t.teardown(() => c.stop());
  const { metadata, created } = countingSessions(c);
  const first = (await watchedSession(c)).session;
  const second = (await watchedSession(c)).session;
  let asked = 0;
  let release!: () => void;
  const reconnected = new Promise<void>((r) => {
    release = r;
  });
  const sharedSession = async (): Promise<Session> => {
    asked++;
    if (asked === 1) return first;
    // The owner is reconnecting: the first ask after the loss fails, the next one waits for it.
    if (asked === 2) throw new Error('owner has no live session (injected)');
    await reconnected;
    return second;
  };
  const a = new Auditor({
    metadata,
    directory: c.directory,
    pool: c.pool,
    auditIntervalMs: 20,
    sharedSession,
  });
  t.teardown(() => a.close());
  let audits = 0;
  const run = a.runOnce.bind(a);
  a.runOnce = async () => {
    audits++;
    return run();
  };
  await a.start();
  await until(() => a.isLeader && audits > 0);
  t.true(a.isLeader);
  c.metadata.expireSession(first.id);
  t.false(a.isLeader);
  await until(() => asked === 3);
  t.is(asked, 3, 'asked again after a failed ask');
  t.false(a.isLeader, 'not leader while the owner reconnects');
  release();
  await until(() => a.isLeader);
  t.true(a.isLeader, 'leader again on the next shared session');
  t.truthy(await c.metadata.get(`${AUDITOR_ELECTION_PREFIX}${second.id}`));
  const before = audits;
  await until(() => audits > before + 1);
  t.true(audits > before + 1, 'audits resume');
  t.is(created(), 0);
});

test('auditor - close withdraws from the election but leaves the shared session open', async (t) => {
  const c = await MemoryCluster.start(1);
  t.teardown(() => c.stop());
  const { session, closed } = await watchedSession(c);
  t.teardown(() => session.close());
  const a = new Auditor({
    metadata: c.metadata,
    directory: c.directory,
    pool: c.pool,
    sharedSession: async () => session,
  });
  await a.start();
  await until(() => a.isLeader);
  const key = `${AUDITOR_ELECTION_PREFIX}${session.id}`;
  t.truthy(await c.metadata.get(key), 'leader on the shared session');
  const b = new Auditor({ metadata: c.metadata, directory: c.directory, pool: c.pool, sessionTtlMs: 2000 });
  t.teardown(() => b.close());
  await b.start();
  await a.close();
  t.false(closed(), 'the shared session is not closed');
  t.false(session.lost);
  t.is(await c.metadata.get(key), undefined, 'the election key is gone');
  await until(() => b.isLeader);
  t.true(b.isLeader, 'the next auditor takes over while the shared session lives on');
});

test('auditor - close does not wait for a shared session the owner cannot give yet', async (t) => {
  const c = await MemoryCluster.start(1);
  t.teardown(() => c.stop());
  const { session } = await watchedSession(c);
  let asked = 0;
  const a = new Auditor({
    metadata: c.metadata,
    directory: c.directory,
    pool: c.pool,
    // After the loss the owner never reconnects (etcd stays away).
    sharedSession: async () => (++asked === 1 ? session : new Promise<Session>(() => undefined)),
  });
  await a.start();
  await until(() => a.isLeader);
  c.metadata.expireSession(session.id);
  await until(() => asked === 2);
  const closed = await Promise.race([
    a.close().then(() => true),
    new Promise<boolean>((r) => setTimeout(() => r(false), 2000)),
  ]);
  t.true(closed, 'close() returns while the owner is still reconnecting');
});
