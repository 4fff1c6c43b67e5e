/**
 * One conformance suite for every MetadataStore implementation. Each
 * implementation's test file calls `metadataConformance(harness)`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { AlreadyExistsError, BadVersionError, InvalidArgumentError } from '@sluice/common';
import { type MetadataStore, type Session, SessionLeaderElection, type WatchEvent } from '@sluice/metadata';
import test from 'ava';
import { waitFor } from './ports.js';

export interface MetadataHarness {
  /** 'etcd' or 'embedded'; used in test titles. */
  name: string;
  /** A fresh, empty store (own prefix or own data dir). Closed by the suite. */
  open(): Promise<MetadataStore>;
  /**
   * A URL a child process can open for the same data as `store`, or undefined
   * when the store cannot be shared across processes (embedded): the suite
   * then kills the child and reopens the data itself.
   */
  childUrl(store: MetadataStore): string | undefined;
  /** Close `store` and open it again on the same data (embedded: restart). */
  reopen(store: MetadataStore): Promise<MetadataStore>;
  /** The URL of `store` for a child that has it exclusively (embedded). */
  exclusiveUrl?(store: MetadataStore): string;
  /** End a session as if its owner died (single-process stores, where no child can own one). */
  killSession?(store: MetadataStore, session: Session): void;
}

export const TTL_MS = 2000;

const b = (s: string) => Buffer.from(s);

export function metadataConformance(h: MetadataHarness): void {
  const stores: MetadataStore[] = [];
  const children: ChildProcess[] = [];
  const open = async () => {
    const s = await h.open();
    stores.push(s);
    return s;
  };
  test.after.always(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    for (const s of stores) await s.close().catch(() => undefined);
  });
  const spawnChild = (args: string[]) => {
    const child = spawn(process.execPath, ['--import=tsx', 'test/support/metadata-child.ts', ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, SLUICE_LOG_LEVEL: 'silent' },
    });
    children.push(child);
    const events: { event: string; [k: string]: unknown }[] = [];
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      try {
        events.push(JSON.parse(line));
      } catch {
        // not a milestone line
      }
    });
    const until = (event: string, ms = 15_000) =>
      waitFor(
        () => {
          if (child.exitCode !== null) throw new Error(`child exited with ${child.exitCode}`);
          return events.some((e) => e.event === event);
        },
        ms,
        `child ${event}`,
      );
    return { child, events, until };
  };

  test(`${h.name} - CAS with a stale version fails with BadVersionError; create-only on an existing key with AlreadyExistsError`, async (t) => {
    const s = await open();
    const v1 = await s.put('cas/a', b('1'), { createOnly: true });
    await t.throwsAsync(s.put('cas/a', b('x'), { createOnly: true }), { instanceOf: AlreadyExistsError });
    const v2 = await s.put('cas/a', b('2'), { expectedVersion: v1 });
    t.true(v2 > v1);
    const err = await t.throwsAsync(s.put('cas/a', b('3'), { expectedVersion: v1 }), {
      instanceOf: BadVersionError,
    });
    t.regex(err?.message ?? '', /cas\/a.*version/);
    await t.throwsAsync(s.delete('cas/a', { expectedVersion: v1 }), { instanceOf: BadVersionError });
    t.is((await s.get('cas/a'))?.value.toString(), '2');
    t.true(await s.delete('cas/a', { expectedVersion: v2 }));
    t.false(await s.delete('cas/a'));
    // A re-created key never reuses an old version, so a stale CAS can't succeed by accident.
    const v3 = await s.put('cas/a', b('again'));
    t.true(v3 > v2);
    const got = await s.get('cas/a');
    t.is(got?.version, v3);
    t.is(got?.createRevision, v3);
    await t.throwsAsync(s.put('cas/missing', b('x'), { expectedVersion: v3 }), {
      instanceOf: BadVersionError,
    });
  });

  test(`${h.name} - a watch delivers every change in order and resumes from a revision without gaps`, async (t) => {
    const s = await open();
    const seen: WatchEvent[] = [];
    const start = (await s.revision()) + 1;
    const w = await s.watch('w/', (ev) => seen.push(ev), { fromRevision: start });
    const expected: string[] = [];
    for (let i = 0; i < 20; i++) {
      await s.put(`w/k${i % 5}`, b(`v${i}`));
      expected.push(`put w/k${i % 5} v${i}`);
      if (i % 7 === 6) {
        await s.delete(`w/k${i % 5}`);
        expected.push(`delete w/k${i % 5}`);
      }
    }
    await s.put('other/x', b('not watched'));
    await s.txn([
      { op: 'put', key: 'w/t1', value: b('a') },
      { op: 'put', key: 'w/t2', value: b('b') },
    ]);
    expected.push('put w/t1 a', 'put w/t2 b');
    const fmt = (e: WatchEvent) =>
      e.type === 'put' ? `put ${e.key} ${e.value.toString()}` : `delete ${e.key}`;
    await waitFor(() => seen.length >= expected.length, 10_000, 'watch events');
    t.deepEqual(seen.map(fmt), expected);
    const versions = seen.map((e) => e.version);
    t.deepEqual(
      [...versions].sort((x, y) => x - y),
      versions,
    );
    await w.close();

    // A new watch from the revision after the 10th event resumes exactly there.
    const resumeFrom = (seen[9]?.version ?? 0) + 1;
    const again: WatchEvent[] = [];
    const w2 = await s.watch('w/', (ev) => again.push(ev), { fromRevision: resumeFrom });
    await s.put('w/after', b('z'));
    await waitFor(() => again.length >= expected.length - 10 + 1, 10_000, 'resumed events');
    t.deepEqual(again.map(fmt), [...expected.slice(10), 'put w/after z']);
    await w2.close();
  });

  test(`${h.name} - list by prefix is paginated and ordered; listAll follows pages`, async (t) => {
    const s = await open();
    for (let i = 0; i < 25; i++) await s.put(`l/${String(i).padStart(3, '0')}`, b(String(i)));
    await s.put('l2/outside', b('x'));
    const p1 = await s.list('l/', { limit: 10 });
    t.is(p1.items.length, 10);
    t.is(p1.next, 'l/009');
    const p2 = await s.list('l/', { limit: 10, after: p1.next as string });
    t.is(p2.items[0]?.key, 'l/010');
    const p3 = await s.list('l/', { limit: 10, after: p2.next as string });
    t.is(p3.items.length, 5);
    t.is(p3.next, undefined);
    const all = await s.listAll('l/', { limit: 7 });
    t.deepEqual(
      all.map((x) => x.key),
      Array.from({ length: 25 }, (_, i) => `l/${String(i).padStart(3, '0')}`),
    );
    const keysOnly = await s.list('l/', { keysOnly: true, limit: 1 });
    t.is(keysOnly.items[0]?.value.length, 0);
  });

  test(`${h.name} - a 100-operation transaction is all-or-nothing`, async (t) => {
    const s = await open();
    const guard = await s.put('tx/guard', b('g'));
    const ops = Array.from({ length: 99 }, (_, i) => ({
      op: 'put' as const,
      key: `tx/k${i}`,
      value: b(String(i)),
    }));
    await t.throwsAsync(s.txn([...ops, { op: 'check', key: 'tx/guard', expectedVersion: guard + 1000 }]), {
      instanceOf: BadVersionError,
    });
    t.deepEqual(await s.listAll('tx/k'), []);
    await t.throwsAsync(
      s.txn([...ops.slice(1), { op: 'put', key: 'tx/guard', value: b('x'), createOnly: true }]),
      {
        instanceOf: AlreadyExistsError,
      },
    );
    t.deepEqual(await s.listAll('tx/k'), []);
    const { revision } = await s.txn([...ops, { op: 'check', key: 'tx/guard', expectedVersion: guard }]);
    const written = await s.listAll('tx/k');
    t.is(written.length, 99);
    t.true(written.every((x) => x.version === revision));
    const del = await s.txn(
      written.map((x) => ({ op: 'delete' as const, key: x.key, expectedVersion: revision })),
    );
    t.true(del.revision > revision);
    t.deepEqual(await s.listAll('tx/k'), []);
  });

  test(`${h.name} - binary keys and values round-trip`, async (t) => {
    const s = await open();
    const value = Buffer.alloc(256);
    for (let i = 0; i < 256; i++) value[i] = i;
    const keys = ['bin/\u0000nul', 'bin/é-ü-中文', 'bin/😀emoji', 'bin/\uffff', 'bin/tab\tnewline\n'];
    for (const k of keys) await s.put(k, value);
    for (const k of keys) t.deepEqual((await s.get(k))?.value, value, k);
    const listed = (await s.listAll('bin/')).map((x) => x.key);
    t.deepEqual(
      listed,
      [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y))),
    );
    await s.put('bin/empty', Buffer.alloc(0));
    t.is((await s.get('bin/empty'))?.value.length, 0);
  });

  test(`${h.name} - ephemeral keys live with their session; close removes them at once`, async (t) => {
    const s = await open();
    const session = await s.createSession(TTL_MS);
    await s.put('eph/a', b('a'), { session });
    await s.txn([{ op: 'put', key: 'eph/b', value: b('b'), session }]);
    await s.put('eph/persistent', b('p'));
    t.true((await s.get('eph/a'))?.ephemeral);
    t.falsy((await s.get('eph/persistent'))?.ephemeral);
    let lost = false;
    session.onLost(() => {
      lost = true;
    });
    // Outlives several TTLs: the keepalive works.
    await new Promise((r) => setTimeout(r, TTL_MS * 1.6));
    t.truthy(await s.get('eph/a'));
    await session.close();
    t.is(await s.get('eph/a'), undefined);
    t.is(await s.get('eph/b'), undefined);
    t.truthy(await s.get('eph/persistent'));
    t.false(lost);
    await t.throwsAsync(s.put('eph/c', b('c'), { session }), { code: 'SESSION_LOST' } as never);
  });

  test(`${h.name} - an ephemeral key disappears within its TTL after its owner process is SIGKILLed`, async (t) => {
    const s = await open();
    const url = h.childUrl(s);
    if (url) {
      const c = spawnChild(['ephemeral', url, 'kill/owned', String(TTL_MS)]);
      await c.until('ready');
      t.truthy(await s.get('kill/owned'));
      const killedAt = Date.now();
      c.child.kill('SIGKILL');
      await waitFor(
        async () => (await s.get('kill/owned')) === undefined,
        TTL_MS + 3000,
        'ephemeral key gone',
      );
      const took = Date.now() - killedAt;
      t.log(`ephemeral key gone ${took} ms after SIGKILL (TTL ${TTL_MS} ms)`);
      // etcd checks lease expiry every 500 ms: allow that on top of the TTL.
      t.true(took <= TTL_MS + 600, `took ${took} ms`);
      t.truthy(await s.get('kill/owned.persistent'));
    } else {
      // Single-process store: the owner *is* the store; it restarts without the key.
      const exclusive = h.exclusiveUrl?.(s) as string;
      await s.close();
      const c = spawnChild(['ephemeral', exclusive, 'kill/owned', String(TTL_MS)]);
      await c.until('ready');
      c.child.kill('SIGKILL');
      await new Promise((r) => c.child.once('exit', r));
      const s2 = await h.reopen(s);
      stores.push(s2);
      t.is(await s2.get('kill/owned'), undefined);
      t.is((await s2.get('kill/owned.persistent'))?.value.toString(), 'persistent');
    }
  });

  test(`${h.name} - leader election: one leader at a time; failover within the TTL when the leader's session dies`, async (t) => {
    const s = await open();
    const s1: Session = await s.createSession(TTL_MS);
    const s2: Session = await s.createSession(TTL_MS);
    const e1 = new SessionLeaderElection(s, s1, 'elect/a/');
    const e2 = new SessionLeaderElection(s, s2, 'elect/a/');
    await e1.campaign(b('one'));
    t.true(e1.isLeader);
    let e2Won = false;
    const p2 = e2.campaign(b('two')).then(() => {
      e2Won = true;
    });
    await new Promise((r) => setTimeout(r, 300));
    t.false(e2Won);
    t.is((await e1.leader())?.toString(), 'one');
    await e1.resign();
    await p2;
    t.true(e2.isLeader);
    t.is((await e2.leader())?.toString(), 'two');
    // A third candidate waits; resigning it leaves no candidacy behind.
    const s3 = await s.createSession(TTL_MS);
    const e3 = new SessionLeaderElection(s, s3, 'elect/a/');
    const p3 = e3.campaign(b('three'));
    await new Promise((r) => setTimeout(r, 200));
    await e3.resign();
    await t.throwsAsync(p3);
    t.is((await s.listAll('elect/a/')).length, 1);
    await Promise.all([s1.close(), s2.close(), s3.close()]);

    const url = h.childUrl(s);
    if (!url) {
      const dying = await s.createSession(TTL_MS);
      const eDying = new SessionLeaderElection(s, dying, 'elect/b/');
      await eDying.campaign(b('dying'));
      const s5 = await s.createSession(TTL_MS);
      const e5 = new SessionLeaderElection(s, s5, 'elect/b/');
      const p5 = e5.campaign(b('next'));
      await new Promise((r) => setTimeout(r, 200));
      t.false(e5.isLeader);
      const lostErr = new Promise<Error>((resolve) => dying.onLost(resolve));
      h.killSession?.(s, dying);
      await lostErr;
      t.false(eDying.isLeader);
      await p5;
      t.is((await e5.leader())?.toString(), 'next');
      await s5.close();
      return;
    }
    const leader = spawnChild(['leader', url, 'elect/b/', String(TTL_MS), 'child']);
    await leader.until('leader');
    const s4 = await s.createSession(TTL_MS);
    const e4 = new SessionLeaderElection(s, s4, 'elect/b/');
    let wonAt = 0;
    const p4 = e4.campaign(b('parent')).then(() => {
      wonAt = Date.now();
    });
    await new Promise((r) => setTimeout(r, 300));
    t.is((await e4.leader())?.toString(), 'child');
    const killedAt = Date.now();
    leader.child.kill('SIGKILL');
    await p4;
    t.log(`failover ${wonAt - killedAt} ms after SIGKILL of the leader (TTL ${TTL_MS} ms)`);
    t.true(wonAt - killedAt <= TTL_MS + 600);
    t.is((await e4.leader())?.toString(), 'parent');
    await s4.close();
  });

  test(`${h.name} - bad input: empty key and over-size values are InvalidArgumentErrors`, async (t) => {
    const s = await open();
    const empty = await t.throwsAsync(s.put('', b('x')), { instanceOf: InvalidArgumentError });
    t.regex(empty?.message ?? '', /empty/);
    await t.throwsAsync(s.get(''), { instanceOf: InvalidArgumentError });
    await t.throwsAsync(s.delete(''), { instanceOf: InvalidArgumentError });
    const big = await t.throwsAsync(s.put('big', Buffer.alloc(2 * 1024 * 1024)), {
      instanceOf: InvalidArgumentError,
    });
    t.regex(big?.message ?? '', /bytes.*limit/);
    await t.throwsAsync(
      s.txn(
        Array.from({ length: 3 }, (_, i) => ({
          op: 'put' as const,
          key: `big/${i}`,
          value: Buffer.alloc(700_000),
        })),
      ),
      { instanceOf: InvalidArgumentError },
    );
    t.deepEqual(await s.listAll('big'), []);
    // Just under the limit works.
    await s.put('big/ok', Buffer.alloc(1024 * 1024));
    t.is((await s.get('big/ok'))?.value.length, 1024 * 1024);
  });
}
