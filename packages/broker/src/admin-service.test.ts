import { Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { type SluiceError, silentLogger, UnavailableError } from '@sluice/common';
import test, { type ExecutionContext } from 'ava';
import { AdminClientPool } from './admin-client-pool.js';
import { type AdminDeps, createAdminService } from './admin-service.js';
import type { ClusterResources } from './cluster-resources.js';
import type { Ownership } from './ownership.js';
import { defaultPolicies } from './policies.js';
import { embeddedStore, startBroker } from './test-support/broker-rig.js';
import { MemoryLog, memoryStore } from './test-support/memory-log.js';
import type { ProducerHandle } from './topic.js';
import { TopicManager } from './topic-manager.js';
import { parseTopicName, partitionName } from './topic-name.js';

/** The admin service of a broker owning every topic, over in-memory logs. */
async function rig() {
  const policies = defaultPolicies({ ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 });
  const resources = {
    namespacePolicies: async () => policies,
    getTopic: async () => undefined,
    topicPolicies: async () => policies,
    createTopic: async () => true,
  } as unknown as ClusterResources;
  const ownership = { ensureOwned: async () => undefined, owns: () => true } as unknown as Ownership;
  const logs = { open: async () => new MemoryLog().asLog() };
  const topics = new TopicManager(memoryStore(), resources, ownership, logs, silentLogger, undefined);
  const admin = createAdminService({
    resources,
    topics,
    ownership,
    logger: silentLogger,
  } as unknown as AdminDeps);
  const deleteSubscription = (topic: string, subscription: string): Promise<ServiceError | null> =>
    new Promise((resolve) =>
      (admin.DeleteSubscription as (call: unknown, cb: (err: ServiceError | null) => void) => void)(
        { request: { topic, subscription, force: true }, metadata: new Metadata() },
        (err) => resolve(err),
      ),
    );
  return { topics, deleteSubscription };
}

test('admin - DeleteSubscription refuses internal cursors and invalid names, and deletes real subscriptions', async (t) => {
  const { topics, deleteSubscription } = await rig();
  const topic = await topics.acquire(parseTopicName('t/ns/admin-del'));
  await topic.createSubscription('s', 'earliest');
  const cursors = (): string[] => topic.log.cursors().map((c) => c.name);
  t.true(cursors().includes('__dedup'));

  const internal = await deleteSubscription('t/ns/admin-del', '__dedup');
  t.is(internal?.code, status.INVALID_ARGUMENT);
  t.regex(internal?.details ?? '', /subscription name '__dedup' is invalid/);
  t.true(cursors().includes('__dedup'), 'the dedup cursor is still there');
  t.is((await deleteSubscription('t/ns/admin-del', 'a/b'))?.code, status.INVALID_ARGUMENT);
  t.is((await deleteSubscription('t/ns/admin-del', ''))?.code, status.INVALID_ARGUMENT);

  t.is(await deleteSubscription('t/ns/admin-del', 's'), null);
  t.false(cursors().includes('s'));
});

/** Call AdminService `method` on a broker as a client would (not forwarded). */
function adminCall(pool: AdminClientPool, address: string, method: string, req: object): Promise<unknown> {
  return pool.call(address, method, req, new Metadata());
}

function adminPool(t: ExecutionContext): AdminClientPool {
  const pool = new AdminClientPool(10_000);
  t.teardown(() => pool.close());
  return pool;
}

const PRODUCER = { kick: () => undefined } as unknown as ProducerHandle;

// Partitions 0 and 1 of 'orders' fall in one bundle, 2 and 3 in another (4 bundles per namespace).
test('admin - a refused DeleteTopic of a partitioned topic deletes no partition, wherever they are served', async (t) => {
  const store = await embeddedStore(t);
  const a = await startBroker(t, store, 'A');
  const b = await startBroker(t, store, 'B');
  const topic = parseTopicName('public/default/orders');
  await a.broker.resources.createTopic(topic, 4);
  for (const i of [0, 1]) await a.broker.topics.acquire(partitionName(topic, i));
  for (const i of [2, 3]) await b.broker.topics.acquire(partitionName(topic, i));
  const busy = await b.broker.topics.acquire(partitionName(topic, 3));
  busy.producers.set('p-1', PRODUCER);

  const pool = adminPool(t);
  const err = await t.throwsAsync(
    adminCall(pool, a.broker.address, 'DeleteTopic', { topic: topic.full, force: false }),
  );
  t.is((err as SluiceError).code, 'FAILED_PRECONDITION');
  t.regex(err!.message, /orders-partition-3' has 1 producer/);
  const deleted = [...a.logs.byPath, ...b.logs.byPath].filter(([, log]) => log.deleted).map(([p]) => p);
  t.deepEqual(deleted, [], 'no partition was deleted');
  t.truthy(await a.broker.resources.getTopic(topic));
  t.false(busy.isClosed);
  busy.producers.clear();
});

test('admin - DeleteTopic of a partitioned topic deletes partitions served by another broker', async (t) => {
  const store = await embeddedStore(t);
  const a = await startBroker(t, store, 'A');
  const b = await startBroker(t, store, 'B');
  const topic = parseTopicName('public/default/orders');
  await a.broker.resources.createTopic(topic, 4);
  for (const i of [0, 1]) await a.broker.topics.acquire(partitionName(topic, i));
  for (const i of [2, 3]) await b.broker.topics.acquire(partitionName(topic, i));

  const pool = adminPool(t);
  await adminCall(pool, a.broker.address, 'DeleteTopic', { topic: topic.full, force: false });
  t.deepEqual(
    [...b.logs.byPath].filter(([, log]) => log.deleted).map(([p]) => p),
    ['public/default/orders-partition-2', 'public/default/orders-partition-3'],
  );
  t.true([...a.logs.byPath.values()].every((log) => log.deleted));
  t.is(await a.broker.resources.getTopic(topic), undefined);
  t.is(b.broker.topics.count(), 0);

  // One partition named by a client is refused: deleting it alone would leave a hole in the topic.
  await a.broker.resources.createTopic(topic, 2);
  const one = await t.throwsAsync(
    adminCall(pool, a.broker.address, 'DeleteTopic', { topic: partitionName(topic, 1).full, force: true }),
  );
  t.is((one as SluiceError).code, 'INVALID_ARGUMENT');
});

test('admin - UpdatePartitions that failed creating subscriptions on added partitions can be retried with the same count', async (t) => {
  const store = await embeddedStore(t);
  const a = await startBroker(t, store, 'A');
  const topic = parseTopicName('public/default/grow');
  await a.broker.resources.createTopic(topic, 2);
  const pool = adminPool(t);
  await adminCall(pool, a.broker.address, 'CreateSubscription', {
    topic: topic.full,
    subscription: 'orders',
    initialPosition: 'INITIAL_POSITION_LATEST',
  });
  // The added partition's log cannot open the subscription's cursor, once.
  let failures = 1;
  a.logs.onOpen = (path, log) => {
    if (path !== 'public/default/grow-partition-2') return;
    const open = log.openCursor.bind(log);
    log.openCursor = async (name, initial) => {
      if (name === 'orders' && failures-- > 0) throw new UnavailableError('bookies unreachable (injected)');
      return open(name, initial);
    };
  };

  const first = await t.throwsAsync(
    adminCall(pool, a.broker.address, 'UpdatePartitions', { topic: topic.full, partitions: 3 }),
  );
  t.is((first as SluiceError).code, 'UNAVAILABLE');
  t.is((await a.broker.resources.getTopic(topic))?.partitions, 3, 'the count was committed');

  await adminCall(pool, a.broker.address, 'UpdatePartitions', { topic: topic.full, partitions: 3 });
  const added = partitionName(topic, 2).full;
  t.deepEqual(await adminCall(pool, a.broker.address, 'ListSubscriptions', { topic: added }), {
    subscriptions: ['orders'],
  });
  t.deepEqual(await a.broker.resources.getTopic(topic), { partitions: 3, policies: {} });
  // Once finished, the same count again changes nothing; fewer partitions are still refused.
  await adminCall(pool, a.broker.address, 'UpdatePartitions', { topic: topic.full, partitions: 3 });
  const fewer = await t.throwsAsync(
    adminCall(pool, a.broker.address, 'UpdatePartitions', { topic: topic.full, partitions: 2 }),
  );
  t.is((fewer as SluiceError).code, 'INVALID_ARGUMENT');
});
