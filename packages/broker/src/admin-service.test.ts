import { Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { silentLogger } from '@sluice/common';
import test from 'ava';
import { type AdminDeps, createAdminService } from './admin-service.js';
import type { ClusterResources } from './cluster-resources.js';
import type { Ownership } from './ownership.js';
import { defaultPolicies } from './policies.js';
import { MemoryLog, memoryStore } from './test-support/memory-log.js';
import { TopicManager } from './topic-manager.js';
import { parseTopicName } from './topic-name.js';

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
