import { AlreadyExistsError, InvalidArgumentError, ResourceExhaustedError } from '@sluice/common';
import test from 'ava';
import { defaultPolicies } from './policies.js';
import { openMemoryTopic } from './test-support/memory-log.js';
import type { ProducerHandle, Topic } from './topic.js';

function openTopic(): Promise<Topic> {
  return openMemoryTopic('t/ns/topic');
}

function producer(name: string): ProducerHandle & { kicked: unknown[]; connected: boolean } {
  return {
    name,
    connected: true,
    kicked: [],
    kick(err: unknown) {
      this.kicked.push(err);
      this.connected = false;
    },
  };
}

test('topic - deleteSubscription refuses internal cursors whoever calls it', async (t) => {
  const topic = await openTopic();
  await t.throwsAsync(topic.deleteSubscription('__dedup', true), {
    instanceOf: InvalidArgumentError,
    message: /'__dedup' is an internal cursor .* cannot be deleted/,
  });
  t.true(topic.log.cursors().some((c) => c.name === '__dedup'));
  await topic.createSubscription('s', 'earliest');
  await topic.deleteSubscription('s', false);
  t.false(topic.log.cursors().some((c) => c.name === 's'));
});

test('topic - a second producer under a connected producer name is refused, the first is left alone', async (t) => {
  const topic = await openTopic();
  const first = producer('p');
  await topic.addProducer(first, 'shared');
  await t.throwsAsync(topic.addProducer(producer('p'), 'shared'), {
    instanceOf: AlreadyExistsError,
    message: /producer name 'p' is in use/,
  });
  await t.throwsAsync(topic.addProducer(producer('p'), 'wait_for_exclusive'), {
    instanceOf: AlreadyExistsError,
  });
  t.deepEqual(first.kicked, []);
  t.is(topic.producers.get('p'), first);
  // Gone (its stream ended): the name is free again.
  topic.removeProducer(first);
  const next = producer('p');
  await topic.addProducer(next, 'shared');
  t.is(topic.producers.get('p'), next);
});

test('topic - a send held by the backlog quota follows a policy update: exception fails it, eviction lets it through', async (t) => {
  for (const [next, outcome] of [
    ['BACKLOG_QUOTA_POLICY_PRODUCER_EXCEPTION', 'refused'],
    ['BACKLOG_QUOTA_POLICY_CONSUMER_BACKLOG_EVICTION', 'admitted'],
  ] as const) {
    const topic = await openTopic();
    const hold = {
      ...defaultPolicies({ ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 }),
      backlogQuota: { limitBytes: 100, policy: 'BACKLOG_QUOTA_POLICY_PRODUCER_HOLD' },
    };
    topic.updatePolicies(hold);
    await topic.admit(1, 200);
    let settled: string | undefined;
    const held = topic.admit(1, 10).then(
      () => {
        settled = 'admitted';
      },
      (err: unknown) => {
        settled = err instanceof ResourceExhaustedError ? 'refused' : String(err);
      },
    );
    await new Promise((r) => setTimeout(r, 250));
    t.is(settled, undefined, 'held while over the quota');
    topic.updatePolicies({ ...hold, backlogQuota: { limitBytes: 100, policy: next } });
    await held;
    t.is(settled, outcome);
  }
});
