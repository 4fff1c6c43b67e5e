import {
  backoffDelay,
  ClosedError,
  InvalidArgumentError,
  type Logger,
  NotFoundError,
  UnavailableError,
} from '@sluice/common';
import type { ManagedLog, ManagedLogConfig } from '@sluice/managed-log';
import type { MetadataStore, Watch } from '@sluice/metadata';
import { bundleOf } from './bundles.js';
import type { ClusterResources, TopicRecord } from './cluster-resources.js';
import { NAMESPACES_PREFIX, ownershipKey, TOPICS_PREFIX } from './metadata-keys.js';
import type { Ownership } from './ownership.js';
import type { EffectivePolicies } from './policies.js';
import { Topic, type TopicCounters } from './topic.js';
import { parseTopicName, type TopicName } from './topic-name.js';

/** Opens the managed log of a topic (`tenant/ns/topic`) with per-topic settings. */
export interface LogProvider {
  open(name: string, config: Partial<ManagedLogConfig>): Promise<ManagedLog>;
}

/** Where a topic lives: its bundle key and effective policies. */
export interface Placement {
  bundleKey: string;
  policies: EffectivePolicies;
  record: TopicRecord | undefined;
  /** The partitioned parent's record when `topic` is one of its partitions. */
  parent: TopicRecord | undefined;
}

/** How often loaded topics run their policy work (message TTL, backlog eviction). */
export const TOPIC_MAINTENANCE_INTERVAL_MS = 1000;

/** Metadata prefixes whose changes alter the effective policies of loaded topics. */
const POLICY_PREFIXES = [NAMESPACES_PREFIX, TOPICS_PREFIX] as const;

/**
 * The topics this broker serves, opened on first use by the bundle's owner.
 * Policy changes in metadata (namespace or topic) reach loaded topics through
 * a watch, without an unload. A watch that ends (its history was compacted
 * while disconnected) is replaced, and every loaded topic re-reads its
 * policies, since changes in between were never delivered.
 */
export class TopicManager {
  private readonly topics = new Map<string, Promise<Topic>>();
  /** The live policy watch of each prefix. */
  private readonly watches = new Map<string, Watch>();
  /** Pending re-watch attempts after a watch ended, per prefix. */
  private readonly rewatchTimers = new Map<string, NodeJS.Timeout>();
  private watching = false;
  /** Set once the broker starts shutting down: no topic opens here any more. */
  private closing = false;
  private maintenanceTimer: NodeJS.Timeout | undefined;
  /** Policy refreshes per topic, chained so an older read never overwrites a newer one. */
  private readonly refreshing = new Map<string, Promise<void>>();

  constructor(
    private readonly store: MetadataStore,
    private readonly resources: ClusterResources,
    private readonly ownership: Ownership,
    private readonly logs: LogProvider,
    private readonly logger: Logger,
    private readonly counters: TopicCounters | undefined,
  ) {}

  async placement(topic: TopicName): Promise<Placement> {
    const ns = await this.resources.namespacePolicies(topic.namespaceName);
    let record = await this.resources.getTopic(topic);
    let parent: TopicRecord | undefined;
    if (topic.partition >= 0) {
      parent = await this.resources.getTopic(parseTopicName(topic.base));
      if (parent && parent.partitions > 0) {
        if (topic.partition >= parent.partitions) {
          throw new NotFoundError(
            `partition ${topic.partition} of '${topic.base}' does not exist; the topic has ${parent.partitions} partitions`,
          );
        }
        record = parent;
      } else {
        parent = undefined;
      }
    }
    const policies = await this.resources.topicPolicies(topic, record);
    return {
      bundleKey: ownershipKey(topic.namespaceName, bundleOf(topic.full, ns.bundles).name),
      policies,
      record,
      parent,
    };
  }

  loaded = new Map<string, Topic>();

  /**
   * Refuse every acquire from now on. The broker calls this first when it
   * shuts down: a topic opened after `closeAll` would never be closed, so its
   * cursors and dedup state would never be persisted.
   */
  refuseNewTopics(): void {
    this.closing = true;
  }

  /** True once the broker started shutting down. */
  get isClosing(): boolean {
    return this.closing;
  }

  private refuseIfClosing(topic: TopicName): void {
    if (!this.closing) return;
    // Retriable with no owner named: the client looks the topic up again and reaches another broker.
    throw new UnavailableError(
      `this broker is shutting down; look '${topic.full}' up again to reach another broker`,
      { details: { owner: '' } },
    );
  }

  /** The topic, opened here after making sure this broker owns its bundle. */
  async acquire(topic: TopicName, opts: { create: boolean } = { create: true }): Promise<Topic> {
    this.refuseIfClosing(topic);
    const place = await this.placement(topic);
    if (place.record && place.record.partitions > 0 && !place.parent) {
      throw new InvalidArgumentError(
        `topic '${topic.full}' is partitioned (${place.record.partitions} partitions); use its partitions '${topic.full}-partition-<i>'`,
      );
    }
    await this.ownership.ensureOwned(place.bundleKey);
    // Single flight: the map holds the opening promise from the moment this call decides to open,
    // with no await in between, so concurrent first uses share one Topic (one dedup state, one set of subscriptions).
    for (;;) {
      const existing = this.topics.get(topic.full);
      if (!existing) break;
      const t = await existing;
      if (!t.isClosed) return t;
      if (this.topics.get(topic.full) === existing) break;
    }
    if (!place.record && !opts.create) throw new NotFoundError(`topic '${topic.full}' does not exist`);
    // Again after the awaits above, with none until the map holds the opening: `closeAll` sees every topic opened.
    this.refuseIfClosing(topic);
    const opening = (async () => {
      if (!place.record) await this.resources.createTopic(topic, 0, true);
      const t = await this.openTopic(topic, place);
      // The session may have ended while the log opened: a topic of a bundle this broker no longer owns must not serve.
      if (!this.ownership.owns(place.bundleKey)) {
        await t.close(new UnavailableError(`lost ownership of '${topic.full}' while opening it`), false);
        throw new UnavailableError(
          `this broker lost ownership of '${topic.full}' while opening it; look the topic up again`,
        );
      }
      return t;
    })();
    this.topics.set(topic.full, opening);
    opening.then(
      (t) => {
        if (this.topics.get(topic.full) === opening) this.loaded.set(topic.full, t);
      },
      () => {
        if (this.topics.get(topic.full) === opening) this.topics.delete(topic.full);
      },
    );
    return opening;
  }

  /** The topic when this broker serves it right now. */
  served(topic: TopicName): Topic | undefined {
    const t = this.loaded.get(topic.full);
    return t && !t.isClosed ? t : undefined;
  }

  private async openTopic(topic: TopicName, place: Placement): Promise<Topic> {
    const p = place.policies;
    const log = await this.logs.open(topic.path, {
      ensembleSize: p.persistence.ensembleSize,
      writeQuorum: p.persistence.writeQuorum,
      ackQuorum: p.persistence.ackQuorum,
      retentionTimeMs: p.retention.timeMs,
      retentionSizeBytes: p.retention.sizeBytes,
      offloadThresholdBytes: p.offloadThresholdBytes,
    });
    try {
      const t = await Topic.open(topic, log, this.store, p, this.logger, this.counters, (fenced) => {
        this.logger.warn({ topic: fenced.name.full }, 'topic fenced by a newer owner; closing it here');
        // Only this instance: a newer one loaded under the same name since must keep serving.
        if (this.loaded.get(fenced.name.full) === fenced) void this.unload(fenced.name, false);
        else
          void fenced.close(
            new ClosedError(`topic '${fenced.name.full}' was fenced by a newer owner`),
            false,
          );
      });
      this.logger.info({ topic: topic.full }, 'topic loaded');
      return t;
    } catch (err) {
      await log.close().catch(() => undefined);
      throw err;
    }
  }

  /** Close a topic here; the next use reopens it (on a new ledger). */
  async unload(topic: TopicName, graceful = true): Promise<boolean> {
    const p = this.topics.get(topic.full);
    if (!p) return false;
    this.topics.delete(topic.full);
    this.loaded.delete(topic.full);
    const t = await p.catch(() => undefined);
    if (!t) return false;
    await t.close(new ClosedError(`topic '${topic.full}' was unloaded; look it up again`), graceful);
    return true;
  }

  /** Watch policy changes and run topic maintenance until `stop`. */
  async start(): Promise<void> {
    this.watching = true;
    for (const prefix of POLICY_PREFIXES) await this.watchPolicies(prefix);
    this.maintenanceTimer = setInterval(() => {
      for (const t of this.all()) {
        t.maintain().catch((err) =>
          this.logger.warn({ err, topic: t.name.full }, 'topic maintenance failed; retrying next round'),
        );
      }
    }, TOPIC_MAINTENANCE_INTERVAL_MS);
    this.maintenanceTimer.unref();
  }

  async stop(): Promise<void> {
    this.watching = false;
    if (this.maintenanceTimer) clearInterval(this.maintenanceTimer);
    this.maintenanceTimer = undefined;
    for (const timer of this.rewatchTimers.values()) clearTimeout(timer);
    this.rewatchTimers.clear();
    const watches = [...this.watches.values()];
    this.watches.clear();
    await Promise.all(watches.map((w) => w.close().catch(() => undefined)));
  }

  /** Watch `prefix` for policy changes, from `fromRevision` (default: changes from now on). */
  private async watchPolicies(prefix: string, fromRevision?: number): Promise<void> {
    let watch: Watch | undefined;
    // A watch may end before `watch()` resolves; handled once it has.
    let endedEarly: Error | undefined;
    const onError = (err: Error): void => {
      if (watch) this.policyWatchEnded(prefix, watch, err);
      else endedEarly = err;
    };
    watch = await this.store.watch(prefix, (ev) => this.policiesChanged(ev.key), {
      ...(fromRevision === undefined ? {} : { fromRevision }),
      onError,
    });
    if (!this.watching) {
      await watch.close().catch(() => undefined);
      return;
    }
    this.watches.set(prefix, watch);
    if (endedEarly) this.policyWatchEnded(prefix, watch, endedEarly);
  }

  /**
   * A policy watch ended for good (CompactedError when etcd compacted the
   * revisions it had to resume from): watch again from the current revision,
   * then re-read the policies of every loaded topic, which covers whatever
   * changed before that revision and was never delivered.
   */
  private policyWatchEnded(prefix: string, w: Watch, err: Error): void {
    if (this.watches.get(prefix) !== w) return;
    this.watches.delete(prefix);
    if (!this.watching) return;
    this.logger.warn({ err, prefix }, 'policy watch ended; watching again and re-reading loaded topics');
    this.rewatch(prefix, 0);
  }

  private rewatch(prefix: string, attempt: number): void {
    const timer = setTimeout(
      () => {
        this.rewatchTimers.delete(prefix);
        if (!this.watching) return;
        (async () => {
          const revision = await this.store.revision();
          await this.watchPolicies(prefix, revision + 1);
          this.refreshAll();
        })().catch((err: unknown) => {
          if (err instanceof ClosedError) {
            this.logger.warn({ err, prefix }, 'metadata store closed; policy watch not restarted');
            return;
          }
          this.logger.warn({ err, prefix, attempt }, 'cannot watch policies again yet; retrying');
          this.rewatch(prefix, attempt + 1);
        });
      },
      attempt === 0 ? 0 : backoffDelay(attempt - 1),
    );
    timer.unref();
    this.rewatchTimers.set(prefix, timer);
  }

  /** Re-read the effective policies of every loaded topic. */
  private refreshAll(): void {
    for (const t of this.all()) this.refresh(t);
  }

  /** Re-read the effective policies of every loaded topic the changed key governs. */
  private policiesChanged(key: string): void {
    const ns = key.startsWith(NAMESPACES_PREFIX) ? key.slice(NAMESPACES_PREFIX.length) : undefined;
    const path = key.startsWith(TOPICS_PREFIX) ? key.slice(TOPICS_PREFIX.length) : undefined;
    for (const t of this.all()) {
      const affected =
        (ns !== undefined && t.name.namespaceName === ns) ||
        (path !== undefined && (t.name.path === path || parseTopicName(t.name.base).path === path));
      if (affected) this.refresh(t);
    }
  }

  /** Re-read one topic's effective policies, after any refresh of it still running. */
  private refresh(t: Topic): void {
    const run = (this.refreshing.get(t.name.full) ?? Promise.resolve())
      .then(async () => {
        if (t.isClosed) return;
        const place = await this.placement(t.name);
        t.updatePolicies(place.policies);
        this.logger.debug({ topic: t.name.full }, 'topic policies updated');
      })
      .catch((err) =>
        this.logger.warn({ err, topic: t.name.full }, 'cannot refresh topic policies; they apply on reload'),
      );
    this.refreshing.set(t.name.full, run);
    void run.finally(() => {
      if (this.refreshing.get(t.name.full) === run) this.refreshing.delete(t.name.full);
    });
  }

  /** Forget a closed topic (after delete). */
  forget(topic: TopicName): void {
    this.topics.delete(topic.full);
    this.loaded.delete(topic.full);
  }

  async closeAll(reason: unknown, graceful: boolean): Promise<void> {
    const all = [...this.topics.values()];
    this.topics.clear();
    this.loaded.clear();
    await Promise.all(
      all.map(async (p) => {
        const t = await p.catch(() => undefined);
        await t?.close(reason, graceful);
      }),
    );
  }

  count(): number {
    return this.loaded.size;
  }

  all(): Topic[] {
    return [...this.loaded.values()];
  }
}
