import { silentLogger } from '@sluice/common';
import { AUDITOR_ELECTION_PREFIX } from '@sluice/ledger';
import type { MetadataStore, Session } from '@sluice/metadata';
import test from 'ava';
import { BrokerRuntime } from './runtime.js';
import { embeddedStore, freePort } from './test-support/broker-rig.js';

test('broker runtime - the autorecovery auditor campaigns on the broker session: one lease per process', async (t) => {
  const inner = await embeddedStore(t);
  const sessions: Session[] = [];
  const store = new Proxy(inner, {
    get(target, prop) {
      if (prop === 'createSession') {
        return async (ttlMs: number) => {
          const session = await target.createSession(ttlMs);
          sessions.push(session);
          return session;
        };
      }
      const value = (target as unknown as Record<string | symbol, unknown>)[prop];
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as unknown as MetadataStore;
  const port = await freePort();
  const runtime = await BrokerRuntime.start({
    metadata: store,
    bindHost: '127.0.0.1',
    port,
    httpPort: 0,
    advertiseAddress: `127.0.0.1:${port}`,
    brokerId: 'A',
    defaultPersistence: { ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 },
    autorecovery: { gracePeriodMs: 60_000 },
    logger: silentLogger,
  });
  t.teardown(() => runtime.close());
  const electionKeys = () => inner.listAll(AUDITOR_ELECTION_PREFIX, { keysOnly: true });
  for (let i = 0; i < 250 && (await electionKeys()).length === 0; i++)
    await new Promise((r) => setTimeout(r, 20));
  t.is(sessions.length, 1, 'the broker session is the only one');
  t.deepEqual(
    (await electionKeys()).map((k) => k.key),
    [`${AUDITOR_ELECTION_PREFIX}${sessions[0]!.id}`],
  );
  await runtime.close();
  t.deepEqual(await electionKeys(), []);
});
