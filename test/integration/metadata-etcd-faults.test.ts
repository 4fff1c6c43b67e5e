import { InvalidArgumentError, SessionLostError, UnavailableError } from '@sluice/common';
import { CompactedError, EtcdMetadataStore, openMetadataStore, type WatchEvent } from '@sluice/metadata';
import test from 'ava';
import { EtcdServer } from '../support/etcd.js';
import { freePort, waitFor } from '../support/ports.js';

const TTL_MS = 2000;
const b = (s: string) => Buffer.from(s);

let server: EtcdServer;
test.before(async () => {
  server = await EtcdServer.start();
});
test.after.always(async () => {
  await server?.destroy();
});

test('etcd faults - session lost when etcd is stopped longer than the TTL; the store recovers when etcd returns', async (t) => {
  const store = new EtcdMetadataStore({
    endpoints: [server.endpoint],
    prefix: '/sluice-test/faults-session',
    callTimeoutMs: 1500,
  });
  t.teardown(() => store.close());
  const session = await store.createSession(TTL_MS);
  await store.put('owned', b('x'), { session });
  const lost: Error[] = [];
  session.onLost((err) => lost.push(err));
  // Watch across the outage: every change must arrive once, in order.
  const seen: WatchEvent[] = [];
  const w = await store.watch('w/', (ev) => seen.push(ev));
  t.teardown(() => w.close());
  await store.put('w/before', b('1'));

  const stoppedAt = Date.now();
  await server.stop();
  await waitFor(() => lost.length > 0, TTL_MS + 2000, 'session lost');
  const lostAfter = Date.now() - stoppedAt;
  t.log(`session lost ${lostAfter} ms after etcd stopped (TTL ${TTL_MS} ms)`);
  t.true(lostAfter <= TTL_MS + 200);
  t.true(session.lost);
  t.true(lost[0] instanceof SessionLostError);
  // While etcd is down, calls fail clearly and in bounded time.
  const t0 = Date.now();
  await t.throwsAsync(store.get('owned'), { instanceOf: UnavailableError });
  t.true(Date.now() - t0 < 3000);
  await new Promise((r) => setTimeout(r, 500));
  t.is(lost.length, 1, 'lost fires once');

  await server.resume();
  await waitFor(
    async () => {
      try {
        await store.get('w/before');
        return true;
      } catch {
        return false;
      }
    },
    10_000,
    'store usable again',
  );
  await t.throwsAsync(store.put('again', b('y'), { session }), { instanceOf: SessionLostError });
  const fresh = await store.createSession(TTL_MS);
  await store.put('owned2', b('z'), { session: fresh });
  t.true((await store.get('owned2'))?.ephemeral);
  // The lost session's key was revoked (or expires) rather than lingering.
  await waitFor(
    async () => (await store.get('owned')) === undefined,
    TTL_MS + 3000,
    'old ephemeral key gone',
  );
  await store.put('w/after', b('2'));
  await waitFor(() => seen.length >= 2, 10_000, 'watch resumed');
  t.deepEqual(
    seen.map((e) => e.key),
    ['w/before', 'w/after'],
  );
  await fresh.close();
});

test('etcd faults - a watch resumes from its last revision across an etcd restart, with writes from another client', async (t) => {
  const a = new EtcdMetadataStore({ endpoints: [server.endpoint], prefix: '/sluice-test/faults-watch' });
  t.teardown(() => a.close());
  const seen: string[] = [];
  const w = await a.watch('k/', (ev) => seen.push(`${ev.type} ${ev.key}`));
  t.teardown(() => w.close());
  for (let i = 0; i < 5; i++) await a.put(`k/${i}`, b(String(i)));
  await waitFor(() => seen.length === 5, 5000, 'first events');
  await server.stop();
  await server.resume();
  // A second client writes right away, possibly before the watch has reconnected.
  const writer = new EtcdMetadataStore({ endpoints: [server.endpoint], prefix: '/sluice-test/faults-watch' });
  t.teardown(() => writer.close());
  for (let i = 5; i < 10; i++) await writer.put(`k/${i}`, b(String(i)));
  await writer.delete('k/0');
  await waitFor(() => seen.length >= 11, 10_000, 'events after restart');
  await new Promise((r) => setTimeout(r, 200));
  t.deepEqual(seen, [...Array.from({ length: 10 }, (_, i) => `put k/${i}`), 'delete k/0']);
});

test('etcd faults - watching from a compacted revision fails with CompactedError', async (t) => {
  const s = new EtcdMetadataStore({ endpoints: [server.endpoint], prefix: '/sluice-test/faults-compact' });
  t.teardown(() => s.close());
  const first = await s.put('c/a', b('1'));
  const last = await s.put('c/a', b('2'));
  // Compact through the etcd HTTP gateway (no compaction API on the store by design).
  const res = await fetch(`http://${server.endpoint}/v3/kv/compaction`, {
    method: 'POST',
    body: JSON.stringify({ revision: String(last), physical: true }),
  });
  t.true(res.ok);
  const err = await t.throwsAsync(
    s.watch('c/', () => undefined, { fromRevision: first }),
    { instanceOf: CompactedError },
  );
  t.regex(err?.message ?? '', /compacted/);
});

test('etcd faults - an unreachable etcd gives a clear error within the call deadline', async (t) => {
  const port = await freePort();
  const store = await openMetadataStore(`etcd://127.0.0.1:${port}/sluice-test/nowhere`, {
    callTimeoutMs: 1000,
  });
  t.teardown(() => store.close());
  const t0 = Date.now();
  const err = await t.throwsAsync(store.get('x'), { instanceOf: UnavailableError });
  t.true(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
  t.regex(err?.message ?? '', new RegExp(`127\\.0\\.0\\.1:${port}.*etcd is running`));
  await t.throwsAsync(store.createSession(TTL_MS), { instanceOf: UnavailableError });
  await t.throwsAsync(
    store.watch('x/', () => undefined),
    { instanceOf: UnavailableError },
  );
});

test('etcd faults - malformed store URLs are InvalidArgumentErrors naming the problem', async (t) => {
  const cases: [string, RegExp][] = [
    ['', /empty/],
    ['etcd:/h:2379', /not a URL/],
    ['etcd:///prefix', /no etcd host/],
    ['etcd://h1:2379,h2/p', /"h2" is not host:port/],
    ['etcd://h1:99999/p', /not host:port/],
    ['zk://h:2181/p', /unknown scheme/],
    ['embedded://host/dir', /three slashes/],
    ['embedded://relative', /three slashes/],
    ['embedded:///', /absolute data dir/],
  ];
  for (const [url, re] of cases) {
    const err = await t.throwsAsync(openMetadataStore(url), { instanceOf: InvalidArgumentError }, url);
    t.regex(err?.message ?? '', re, url);
  }
});
