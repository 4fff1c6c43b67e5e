import { type Counter, counter, Gauge, histogram, type Registry } from '@sluice/common';
import { isInternalCursor, type Topic, type TopicCounters } from './topic.js';
import type { TopicName } from './topic-name.js';

/** What the scrape-time gauges read: the live state of this broker. */
export interface BrokerMetricsSource {
  /** Topics this broker serves right now. */
  topics(): Iterable<Topic>;
  ownedBundles(): number;
  /** True while the broker holds a live metadata session. */
  sessionUp(): boolean;
}

export interface BrokerMetricsOptions {
  /**
   * Label traffic, backlog and storage with `topic` as well as `namespace`.
   * One series per topic (and per subscription): costly in Prometheus with
   * many topics, so off by default.
   */
  perTopic?: boolean;
}

export interface BrokerMetrics {
  counters: TopicCounters;
  /** Seconds from receiving a SendBatch to sending its receipt. */
  observePublishLatency(seconds: number): void;
}

/** Scrape-time values are computed once per scrape, shared by every gauge of that scrape. */
const SNAPSHOT_REUSE_MS = 250;

interface Snapshot {
  at: number;
  topics: number;
  producers: number;
  consumers: number;
  /** Per label set (namespace[, topic]). */
  scopes: Map<string, ScopeValues>;
  /** Per label set (namespace[, topic], subscription). */
  subscriptions: Map<string, SubscriptionValues>;
  /** Topic labels still served (per-topic mode), to drop counters of topics that left. */
  liveTopics: Set<string>;
}

interface ScopeValues {
  labels: Record<string, string>;
  backlog: number;
  storageBytes: number;
  offloadedBytes: number;
  subscriptions: number;
}

interface SubscriptionValues {
  labels: Record<string, string>;
  backlog: number;
  consumers: number;
  unacked: number;
}

/**
 * The broker's `sluice_broker_*` metrics (Prometheus names with units).
 * Traffic counters move per stored or delivered batch; every gauge is computed
 * when Prometheus scrapes, never per message.
 */
export function brokerMetrics(
  registry: Registry,
  source: BrokerMetricsSource,
  opts: BrokerMetricsOptions = {},
): BrokerMetrics {
  const perTopic = opts.perTopic === true;
  const scopeLabels = perTopic ? ['namespace', 'topic'] : ['namespace'];
  const scopeOf = (t: TopicName): Record<string, string> =>
    perTopic ? { namespace: t.namespaceName, topic: t.full } : { namespace: t.namespaceName };

  const msgIn = counter(
    registry,
    'sluice_broker_messages_in_total',
    'Messages stored by producers',
    scopeLabels,
  );
  const bytesIn = counter(
    registry,
    'sluice_broker_in_bytes_total',
    'Batch payload bytes stored by producers',
    scopeLabels,
  );
  const msgOut = counter(
    registry,
    'sluice_broker_messages_out_total',
    'Messages delivered to consumers',
    scopeLabels,
  );
  const bytesOut = counter(
    registry,
    'sluice_broker_out_bytes_total',
    'Batch payload bytes delivered to consumers',
    scopeLabels,
  );
  const publishLatency = histogram(
    registry,
    'sluice_broker_publish_latency_seconds',
    'Time from receiving a SendBatch to sending its receipt (admission, storage on Qa bookies, ordering)',
  );
  // Label objects of the counters, memoised per scope: the hot path builds no objects.
  const labelCache = new Map<string, Record<string, string>>();
  const labelsOf = (t: TopicName): Record<string, string> => {
    const key = perTopic ? t.full : t.namespaceName;
    let l = labelCache.get(key);
    if (!l) {
      l = scopeOf(t);
      labelCache.set(key, l);
    }
    return l;
  };

  let last: Snapshot | undefined;
  const snapshot = (): Snapshot => {
    const now = performance.now();
    if (last && now - last.at < SNAPSHOT_REUSE_MS) return last;
    const s: Snapshot = {
      at: now,
      topics: 0,
      producers: 0,
      consumers: 0,
      scopes: new Map(),
      subscriptions: new Map(),
      liveTopics: new Set(),
    };
    for (const t of source.topics()) {
      if (t.isClosed) continue;
      s.topics++;
      s.producers += t.producers.size;
      const labels = scopeOf(t.name);
      const key = perTopic ? t.name.full : t.name.namespaceName;
      if (perTopic) s.liveTopics.add(t.name.full);
      let scope = s.scopes.get(key);
      if (!scope) {
        scope = { labels, backlog: 0, storageBytes: 0, offloadedBytes: 0, subscriptions: 0 };
        s.scopes.set(key, scope);
      }
      const stats = t.log.stats();
      scope.storageBytes += stats.storageBytes;
      scope.offloadedBytes += stats.offloadedBytes;
      for (const c of stats.cursors) {
        if (isInternalCursor(c.name)) continue;
        const sub = t.subscriptions.get(c.name);
        const consumers = sub?.consumerCount() ?? 0;
        s.consumers += consumers;
        scope.backlog += c.backlog;
        scope.subscriptions++;
        // Without per-topic labels, partitions (and topics) sharing a subscription name add up.
        const subKey = `${key}\u0000${c.name}`;
        let sv = s.subscriptions.get(subKey);
        if (!sv) {
          sv = { labels: { ...labels, subscription: c.name }, backlog: 0, consumers: 0, unacked: 0 };
          s.subscriptions.set(subKey, sv);
        }
        sv.backlog += c.backlog;
        sv.consumers += consumers;
        sv.unacked += sub?.unackedMessages() ?? 0;
      }
    }
    if (perTopic) {
      for (const [topic, labels] of labelCache) {
        if (s.liveTopics.has(topic)) continue;
        labelCache.delete(topic);
        for (const c of [msgIn, bytesIn, msgOut, bytesOut] as Counter[]) c.remove(labels);
      }
    }
    last = s;
    return s;
  };

  const scrapeGauge = (
    name: string,
    help: string,
    labelNames: string[],
    fill: (g: Gauge, s: Snapshot) => void,
  ): void => {
    if (registry.getSingleMetric(name)) registry.removeSingleMetric(name);
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        fill(this, snapshot());
      },
    });
  };
  const perScope = (name: string, help: string, pick: (v: ScopeValues) => number): void =>
    scrapeGauge(name, help, scopeLabels, (g, s) => {
      for (const v of s.scopes.values()) g.set(v.labels, pick(v));
    });
  const perSubscription = (name: string, help: string, pick: (v: SubscriptionValues) => number): void =>
    scrapeGauge(name, help, [...scopeLabels, 'subscription'], (g, s) => {
      for (const v of s.subscriptions.values()) g.set(v.labels, pick(v));
    });

  scrapeGauge('sluice_broker_topics', 'Topics served by this broker', [], (g, s) => g.set(s.topics));
  scrapeGauge('sluice_broker_owned_bundles', 'Namespace bundles owned by this broker', [], (g) =>
    g.set(source.ownedBundles()),
  );
  scrapeGauge('sluice_broker_producers', 'Connected producers', [], (g, s) => g.set(s.producers));
  scrapeGauge('sluice_broker_consumers', 'Connected consumers', [], (g, s) => g.set(s.consumers));
  scrapeGauge(
    'sluice_broker_metadata_session_up',
    '1 while the broker holds a live metadata session, else 0',
    [],
    (g) => g.set(source.sessionUp() ? 1 : 0),
  );
  perScope(
    'sluice_broker_backlog_entries',
    'Entries not yet acknowledged, summed over subscriptions',
    (v) => v.backlog,
  );
  perScope(
    'sluice_broker_storage_bytes',
    'Bytes of topic data held by the storage tier (bookies)',
    (v) => v.storageBytes,
  );
  perScope(
    'sluice_broker_offloaded_bytes',
    'Bytes of topic data offloaded to the cold tier',
    (v) => v.offloadedBytes,
  );
  perScope('sluice_broker_subscriptions', 'Durable subscriptions', (v) => v.subscriptions);
  perSubscription(
    'sluice_broker_subscription_backlog_entries',
    'Entries the subscription has not acknowledged',
    (v) => v.backlog,
  );
  perSubscription(
    'sluice_broker_subscription_consumers',
    'Consumers attached to the subscription',
    (v) => v.consumers,
  );
  perSubscription(
    'sluice_broker_subscription_unacked_messages',
    'Messages delivered (or waiting for redelivery) and not yet acknowledged',
    (v) => v.unacked,
  );

  return {
    counters: {
      published(topic, messages, bytes) {
        const l = labelsOf(topic);
        msgIn.inc(l, messages);
        bytesIn.inc(l, bytes);
      },
      delivered(topic, messages, bytes) {
        const l = labelsOf(topic);
        msgOut.inc(l, messages);
        bytesOut.inc(l, bytes);
      },
    },
    observePublishLatency: (seconds) => publishLatency.observe(seconds),
  };
}
