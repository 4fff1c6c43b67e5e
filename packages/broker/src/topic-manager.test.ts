import { FencedError, silentLogger, UnavailableError } from '@sluice/common';
import test from 'ava';
import type { ClusterResources } from './cluster-resources.js';
import type { Ownership } from './ownership.js';
import { defaultPolicies } from './policies.js';
import { MemoryLog, memoryStore } from './test-support/memory-log.js';
import { TopicManager } from './topic-manager.js';
import { parseTopicName } from './topic-name.js';

function manager(opts: { owns?: () => boolean; createDelayMs?: number } = {}) {
  const opened: MemoryLog[] = [];
  const policies = defaultPolicies({ ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 });
  const resources = {
    namespacePolicies: async () => policies,
    getTopic: async () => undefined,
    topicPolicies: async () => policies,
    createTopic: async () => {
      await new Promise((r) => setTimeout(r, opts.createDelayMs ?? 20));
      return true;
    },
  } as unknown as ClusterResources;
  const ownership = {
    ensureOwned: async () => undefined,
    owns: opts.owns ?? (() => true),
  } as unknown as Ownership;
  const logs = {
    open: async () => {
      const log = new MemoryLog();
      opened.push(log);
      return log.asLog();
    },
  };
  const topics = new TopicManager(memoryStore(), resources, ownership, logs, silentLogger, undefined);
  return { topics, opened };
}

test('topic manager - concurrent first uses of a new topic share one Topic', async (t) => {
  const { topics, opened } = manager();
  const name = parseTopicName('t/ns/new-topic');
  const [a, b, c] = await Promise.all([topics.acquire(name), topics.acquire(name), topics.acquire(name)]);
  t.is(a, b);
  t.is(b, c);
  t.is(opened.length, 1);
  t.is(topics.served(name), a);
});

test('topic manager - a topic that finishes opening after ownership was lost is closed, not served', async (t) => {
  let owned = true;
  const { topics } = manager({ owns: () => owned, createDelayMs: 30 });
  const name = parseTopicName('t/ns/late');
  const opening = topics.acquire(name);
  owned = false;
  await t.throwsAsync(opening, { instanceOf: UnavailableError });
  t.is(topics.served(name), undefined);
  t.is(topics.count(), 0);
});

test('topic manager - a fenced write of an unloaded instance does not unload the newer one', async (t) => {
  const { topics, opened } = manager();
  const name = parseTopicName('t/ns/fenced');
  const old = await topics.acquire(name);
  opened[0]!.holdAppends = true;
  const header = { firstSequenceId: 1, count: 1, codec: 0, uncompressedSize: 1, deliverAt: 0, key: '' };
  const write = old.publish('p', header as never, Buffer.from('x'));
  await new Promise((r) => setImmediate(r));
  await topics.unload(name);
  const fresh = await topics.acquire(name);
  t.not(fresh, old);
  opened[0]!.held[0]!.reject(new FencedError('ledger fenced by a newer owner'));
  await t.throwsAsync(write, { instanceOf: FencedError });
  await new Promise((r) => setTimeout(r, 10));
  t.false(fresh.isClosed);
  t.is(topics.served(name), fresh);
});
