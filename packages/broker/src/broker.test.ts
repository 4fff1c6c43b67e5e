import { UnavailableError } from '@sluice/common';
import type {
  EmbeddedMetadataStore,
  MetadataStore,
  PutOptions,
  Session,
  TxnOp,
  TxnResult,
} from '@sluice/metadata';
import test from 'ava';
import { BrokerRegistry } from './broker-registry.js';
import { lookupTopic } from './lookup-service.js';
import { BOOKIES_AVAILABLE_PREFIX, brokerKey } from './metadata-keys.js';
import { embeddedStore, freePort, startBroker } from './test-support/broker-rig.js';
import { parseTopicName } from './topic-name.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(
  cond: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** `inner` with `put`, `txn` and `createSession` replaced by the given functions. */
function intercept(
  inner: EmbeddedMetadataStore,
  over: {
    put?: (key: string, value: Buffer, opts?: PutOptions) => Promise<number>;
    txn?: (ops: TxnOp[]) => Promise<TxnResult>;
    createSession?: (ttlMs: number) => Promise<Session>;
  },
): MetadataStore {
  return new Proxy(inner, {
    get(target, prop) {
      const replaced = (over as Record<string | symbol, unknown>)[prop];
      if (replaced) return replaced;
      const value = (target as unknown as Record<string | symbol, unknown>)[prop];
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as unknown as MetadataStore;
}

test('broker - a session whose registration failed is closed and never holds ownership', async (t) => {
  const inner = await embeddedStore(t);
  await inner.put(`${BOOKIES_AVAILABLE_PREFIX}b-1`, Buffer.from('{}'));
  const sessions: { session: Session; closed: boolean }[] = [];
  let failBrokerPuts = 0;
  let injected = 0;
  const store = intercept(inner, {
    put: async (key, value, opts) => {
      if (key.startsWith('brokers/') && failBrokerPuts > 0) {
        failBrokerPuts--;
        injected++;
        throw new UnavailableError('etcd request timed out (injected)');
      }
      return inner.put(key, value, opts);
    },
    createSession: async (ttlMs) => {
      const session = await inner.createSession(ttlMs);
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
    },
  });
  const { broker } = await startBroker(t, store, 'A');
  t.is(sessions.length, 1);

  // The lease is lost and the first re-registration times out.
  failBrokerPuts = 1;
  inner.expireSession(sessions[0]!.session.id);
  await until(() => injected === 1, 'the failed re-registration');
  t.is(sessions.length, 2);
  const topic = parseTopicName('public/default/orders');
  // Before the retry registers, nothing can be owned: a key on the failed session would outlive it.
  await t.throwsAsync(broker.topics.acquire(topic), { instanceOf: UnavailableError });

  await until(async () => (await broker.notReadyReason()) === null, 'the broker to register again');
  t.is(sessions.length, 3);
  t.true(sessions[1]!.closed, 'the session that failed to register was closed');
  t.false(sessions[2]!.closed);
  await broker.topics.acquire(topic);
  const place = await broker.topics.placement(topic);
  t.is((await broker.ownership.read(place.bundleKey))?.sessionId, sessions[2]!.session.id);
});

test('broker - once close starts it refuses topics and lookups and leaves the registry before closing topics', async (t) => {
  const store = await embeddedStore(t);
  const { broker, logs } = await startBroker(t, store, 'A');
  let opened = 0;
  let closed = 0;
  logs.onOpen = (_path, log) => {
    opened++;
    log.close = async () => {
      await sleep(300);
      closed++;
    };
  };
  const topic = parseTopicName('public/default/orders');
  await broker.topics.acquire(topic);
  const deps = {
    topics: broker.topics,
    ownership: broker.ownership,
    registry: new BrokerRegistry(store),
    resources: broker.resources,
    self: broker.self,
    logger: broker.logger,
  };
  t.is((await lookupTopic(deps, topic.full)).brokerAddress, broker.address);

  const closing = broker.close();
  await sleep(50);
  t.is(closed, 0, 'topics are still closing');
  t.is(await store.get(brokerKey('A')), undefined, 'brokers/A is gone before the topics are closed');
  // A kicked producer looks the topic up and reconnects: both are refused, retriably, so it goes elsewhere.
  await t.throwsAsync(lookupTopic(deps, topic.full), { instanceOf: UnavailableError });
  await t.throwsAsync(broker.topics.acquire(topic), { instanceOf: UnavailableError });
  await closing;
  t.is(opened, 1);
  t.is(closed, 1, 'every log opened was closed');
  t.is(broker.topics.count(), 0);
});

test('broker - /readyz fails until the default namespace exists and the policy watches run', async (t) => {
  const inner = await embeddedStore(t);
  await inner.put(`${BOOKIES_AVAILABLE_PREFIX}b-1`, Buffer.from('{}'));
  let holding = false;
  let release!: () => void;
  const held = new Promise<void>((r) => {
    release = r;
  });
  // The namespace is created in a txn with a check on its tenant.
  const store = intercept(inner, {
    txn: async (ops) => {
      if (ops.some((o) => o.op === 'put' && o.key === 'namespaces/public/default')) {
        holding = true;
        await held;
      }
      return inner.txn(ops);
    },
  });
  const httpPort = await freePort();
  const starting = startBroker(t, store, 'A', { httpPort });
  await until(() => holding, 'the default namespace to be created');
  const early = await fetch(`http://127.0.0.1:${httpPort}/readyz`);
  t.is(early.status, 503);
  t.regex(await early.text(), /starting/);
  release();
  await starting;
  t.is((await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status, 200);
});

test('broker - liveSession gives the live session, waits for a reconnect and fails once closing', async (t) => {
  const inner = await embeddedStore(t);
  const sessions: Session[] = [];
  let failBrokerPuts = 0;
  const store = intercept(inner, {
    put: async (key, value, opts) => {
      if (key.startsWith('brokers/') && failBrokerPuts > 0) {
        failBrokerPuts--;
        throw new UnavailableError('etcd request timed out (injected)');
      }
      return inner.put(key, value, opts);
    },
    createSession: async (ttlMs) => {
      const session = await inner.createSession(ttlMs);
      sessions.push(session);
      return session;
    },
  });
  const { broker } = await startBroker(t, store, 'A');
  t.is(await broker.liveSession(), sessions[0]);

  // The first re-registration fails: the answer is the session the retry registers.
  failBrokerPuts = 1;
  inner.expireSession(sessions[0]!.id);
  const next = await broker.liveSession();
  t.is(sessions.length, 3);
  t.is(next, sessions[2]);
  t.false(next.lost);

  await broker.close();
  await t.throwsAsync(broker.liveSession(), { instanceOf: UnavailableError });
});
