import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger, UnavailableError } from '@sluice/common';
import { EmbeddedMetadataStore, type MetadataStore, type Session, type TxnOp } from '@sluice/metadata';
import test from 'ava';
import { BOOKIES_AVAILABLE_PREFIX, Registrar, type RegistrationValue } from './registration.js';

test('registration - free space is re-published at most every refresh interval and only when it moved noticeably', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bookie-registration-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const store = await EmbeddedMetadataStore.open({ dataDir: dir });
  t.teardown(() => store.close());
  const total = 100 * 1024 ** 3;
  let free = 50 * 1024 ** 3;
  let now = 1_000_000;
  const registrar = new Registrar({
    store,
    identity: { bookieId: 'b-1', instanceId: 'i-1', createdAt: 0 },
    sessionTtlMs: 10_000,
    logger: silentLogger,
    capacityRefreshMs: 30_000,
    now: () => now,
    describe: () => ({
      address: '127.0.0.1:1',
      rack: 'r',
      readOnly: false,
      freeBytes: free,
      totalBytes: total,
    }),
  });
  await registrar.start();
  t.teardown(() => registrar.stop());
  const key = `${BOOKIES_AVAILABLE_PREFIX}b-1`;
  const published = async () => {
    const kv = await store.get(key);
    return {
      free: (JSON.parse(kv!.value.toString('utf8')) as RegistrationValue).freeBytes,
      rev: kv!.version,
    };
  };
  const first = await published();
  t.is(first.free, free);

  // A big change, but too soon after the last publish: nothing is written.
  free -= 10 * 1024 ** 3;
  now += 10_000;
  await registrar.refreshCapacity();
  t.deepEqual(await published(), first);

  // Late enough, but the change since the last publish is under 1% of the disk.
  free = first.free - 512 * 1024 ** 2;
  now += 60_000;
  await registrar.refreshCapacity();
  t.deepEqual(await published(), first);

  // Late enough and moved by more than 1%: published once.
  free = first.free - 2 * 1024 ** 3;
  await registrar.refreshCapacity();
  const second = await published();
  t.is(second.free, free);
  t.true(second.rev > first.rev);

  // The interval counts from that publish again.
  free -= 5 * 1024 ** 3;
  now += 1000;
  await registrar.refreshCapacity();
  t.deepEqual(await published(), second);
  now += 30_000;
  await registrar.refreshCapacity();
  t.is((await published()).free, free);
});

test('registration - a session whose registration failed is revoked before the next attempt', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bookie-registration-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const inner = await EmbeddedMetadataStore.open({ dataDir: dir });
  t.teardown(() => inner.close());
  const sessions: { session: Session; closed: boolean }[] = [];
  let failTxns = 0;
  const store = new Proxy(inner, {
    get(target, prop) {
      if (prop === 'txn')
        return async (ops: TxnOp[]) => {
          if (failTxns > 0) {
            failTxns--;
            throw new UnavailableError('etcd request timed out (injected)');
          }
          return target.txn(ops);
        };
      if (prop === 'createSession')
        return async (ttlMs: number) => {
          const session = await target.createSession(ttlMs);
          const entry = { session, closed: false };
          const close = session.close.bind(session);
          Object.assign(session, {
            close: async () => {
              entry.closed = true;
              await close();
            },
          });
          sessions.push(entry);
          return session;
        };
      const value = (target as unknown as Record<string | symbol, unknown>)[prop];
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as MetadataStore;
  const registrar = new Registrar({
    store,
    identity: { bookieId: 'b-1', instanceId: 'i-1', createdAt: 0 },
    sessionTtlMs: 10_000,
    logger: silentLogger,
    describe: () => ({ address: '127.0.0.1:1', rack: 'r', readOnly: false, freeBytes: 1, totalBytes: 2 }),
  });
  await registrar.start();
  t.teardown(() => registrar.stop());

  // The lease is lost and the first re-registration times out.
  failTxns = 1;
  inner.expireSession(sessions[0]!.session.id);
  const deadline = Date.now() + 10_000;
  while (!registrar.registered && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  t.true(registrar.registered);
  t.is(sessions.length, 3);
  t.true(sessions[1]!.closed, 'the session that failed to register was revoked');
  t.false(sessions[2]!.closed);
  t.truthy(await inner.get(`${BOOKIES_AVAILABLE_PREFIX}b-1`));
});
