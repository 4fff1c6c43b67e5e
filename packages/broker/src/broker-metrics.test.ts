import { createRegistry } from '@sluice/common';
import test from 'ava';
import { type BrokerMetricsSource, brokerMetrics } from './broker-metrics.js';
import type { Topic } from './topic.js';
import { parseTopicName } from './topic-name.js';

/** The parts of a Topic the scrape reads. */
function fakeTopic(
  name: string,
  opts: {
    storage: number;
    offloaded: number;
    cursors: Record<string, { backlog: number; consumers: number }>;
  },
): Topic {
  const subscriptions = new Map(
    Object.entries(opts.cursors).map(([n, c]) => [
      n,
      { consumerCount: () => c.consumers, unackedMessages: () => c.consumers * 2 },
    ]),
  );
  return {
    name: parseTopicName(name),
    isClosed: false,
    producers: new Map([['p', {}]]),
    subscriptions,
    log: {
      stats: () => ({
        entries: 0,
        storageBytes: opts.storage,
        offloadedBytes: opts.offloaded,
        ledgers: [],
        cursors: [
          ...Object.entries(opts.cursors).map(([n, c]) => ({ name: n, backlog: c.backlog })),
          { name: '__dedup', backlog: 1000 },
        ],
      }),
    },
  } as unknown as Topic;
}

function setup(perTopic: boolean) {
  const topics = [
    fakeTopic('a/x/t1-partition-0', {
      storage: 100,
      offloaded: 10,
      cursors: { s: { backlog: 3, consumers: 1 } },
    }),
    fakeTopic('a/x/t1-partition-1', {
      storage: 50,
      offloaded: 0,
      cursors: { s: { backlog: 4, consumers: 1 } },
    }),
    fakeTopic('a/y/t2', { storage: 7, offloaded: 0, cursors: { s: { backlog: 1, consumers: 0 } } }),
  ];
  const source: BrokerMetricsSource = { topics: () => topics, ownedBundles: () => 2, sessionUp: () => true };
  const registry = createRegistry(false);
  const m = brokerMetrics(registry, source, { perTopic });
  const t1 = parseTopicName('a/x/t1-partition-0');
  m.counters.published(t1, 5, 500);
  m.counters.published(parseTopicName('a/x/t1-partition-1'), 2, 20);
  m.counters.delivered(t1, 4, 400);
  m.observePublishLatency(0.002);
  return { registry, topics };
}

test('broker metrics - namespace labels sum topics, partitions and subscriptions; internal cursors are hidden', async (t) => {
  const { registry } = setup(false);
  const text = await registry.metrics();
  t.regex(text, /^sluice_broker_messages_in_total\{namespace="a\/x"\} 7$/m);
  t.regex(text, /^sluice_broker_in_bytes_total\{namespace="a\/x"\} 520$/m);
  t.regex(text, /^sluice_broker_messages_out_total\{namespace="a\/x"\} 4$/m);
  t.regex(text, /^sluice_broker_backlog_entries\{namespace="a\/x"\} 7$/m);
  t.regex(text, /^sluice_broker_backlog_entries\{namespace="a\/y"\} 1$/m);
  t.regex(text, /^sluice_broker_storage_bytes\{namespace="a\/x"\} 150$/m);
  t.regex(text, /^sluice_broker_offloaded_bytes\{namespace="a\/x"\} 10$/m);
  t.regex(text, /^sluice_broker_subscription_backlog_entries\{namespace="a\/x",subscription="s"\} 7$/m);
  t.regex(text, /^sluice_broker_subscription_consumers\{namespace="a\/x",subscription="s"\} 2$/m);
  t.regex(text, /^sluice_broker_topics 3$/m);
  t.regex(text, /^sluice_broker_producers 3$/m);
  t.regex(text, /^sluice_broker_owned_bundles 2$/m);
  t.regex(text, /^sluice_broker_metadata_session_up 1$/m);
  t.regex(text, /^sluice_broker_publish_latency_seconds_count 1$/m);
  t.notRegex(text, /topic="/);
  t.notRegex(text, /__dedup/);
});

test('broker metrics - per-topic labels when enabled, and series of topics that left disappear', async (t) => {
  const { registry, topics } = setup(true);
  const t1 = 'persistent://a/x/t1-partition-0';
  let text = await registry.metrics();
  t.regex(text, new RegExp(`^sluice_broker_messages_in_total\\{namespace="a/x",topic="${t1}"\\} 5$`, 'm'));
  t.regex(text, new RegExp(`^sluice_broker_storage_bytes\\{namespace="a/x",topic="${t1}"\\} 100$`, 'm'));
  t.regex(
    text,
    new RegExp(
      `^sluice_broker_subscription_backlog_entries\\{namespace="a/x",topic="${t1}",subscription="s"\\} 3$`,
      'm',
    ),
  );
  topics.splice(0, 1);
  // Scrape-time values are reused briefly within one scrape; wait past that.
  await new Promise((r) => setTimeout(r, 300));
  await registry.metrics();
  text = await registry.metrics();
  t.false(text.includes(`topic="${t1}"`));
  t.regex(text, /topic="persistent:\/\/a\/x\/t1-partition-1"/);
});
