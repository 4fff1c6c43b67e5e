import { FencedError, silentLogger, UnavailableError } from '@sluice/common';
import { CompactedError, type Watch, type WatchEvent, type WatchOptions } from '@sluice/metadata';
import test from 'ava';
import type { ClusterResources } from './cluster-resources.js';
import { NAMESPACES_PREFIX } from './metadata-keys.js';
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

test('topic manager - after a policy watch ends, loaded topics re-read their policies and watching resumes', async (t) => {
  let policies = defaultPolicies({ ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 });
  const resources = {
    namespacePolicies: async () => policies,
    getTopic: async () => undefined,
    topicPolicies: async () => policies,
    createTopic: async () => true,
  } as unknown as ClusterResources;
  const ownership = { ensureOwned: async () => undefined, owns: () => true } as unknown as Ownership;
  interface FakeWatch extends Watch {
    prefix: string;
    listener: (ev: WatchEvent) => void;
    opts: WatchOptions;
    closed: boolean;
  }
  const watches: FakeWatch[] = [];
  const store = Object.assign(memoryStore(), {
    watch: async (prefix: string, listener: (ev: WatchEvent) => void, opts: WatchOptions = {}) => {
      const w: FakeWatch = {
        prefix,
        listener,
        opts,
        closed: false,
        close: async () => {
          w.closed = true;
        },
      };
      watches.push(w);
      return w;
    },
    revision: async () => 41,
  });
  const logs = { open: async () => new MemoryLog().asLog() };
  const topics = new TopicManager(store, resources, ownership, logs, silentLogger, undefined);
  await topics.start();
  t.teardown(() => topics.stop());
  const topic = await topics.acquire(parseTopicName('t/ns/watched'));
  const namespaces = watches.find((w) => w.prefix === NAMESPACES_PREFIX)!;

  // etcd compacted the revisions the watch had to resume from: changes made meanwhile were never delivered.
  policies = { ...policies, messageTtlMs: 60_000 };
  namespaces.opts.onError?.(new CompactedError(30, 35));
  await until(() => topic.policies.messageTtlMs === 60_000);
  const again = watches.filter((w) => w.prefix === NAMESPACES_PREFIX);
  t.is(again.length, 2, 'the namespaces prefix is watched again');
  t.is(again[1]!.opts.fromRevision, 42, 'from the revision after the one the re-read saw');

  // Later changes arrive through the new watch.
  policies = { ...policies, messageTtlMs: 120_000 };
  again[1]!.listener({ type: 'put', key: `${NAMESPACES_PREFIX}t/ns`, value: Buffer.from('{}'), version: 43 });
  await until(() => topic.policies.messageTtlMs === 120_000);
  await topics.stop();
  t.true(again[1]!.closed);
});

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the condition');
    await new Promise((r) => setTimeout(r, 5));
  }
}
