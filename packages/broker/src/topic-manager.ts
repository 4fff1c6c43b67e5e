import { ClosedError, InvalidArgumentError, type Logger, NotFoundError } from '@sluice/common';
import type { ManagedLog, ManagedLogConfig } from '@sluice/managed-log';
import type { MetadataStore } from '@sluice/metadata';
import { bundleOf } from './bundles.js';
import type { ClusterResources, TopicRecord } from './cluster-resources.js';
import { ownershipKey } from './metadata-keys.js';
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

/** The topics this broker serves, opened on first use by the bundle's owner. */
export class TopicManager {
  private readonly topics = new Map<string, Promise<Topic>>();

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

  /** The topic, opened here after making sure this broker owns its bundle. */
  async acquire(topic: TopicName, opts: { create: boolean } = { create: true }): Promise<Topic> {
    const place = await this.placement(topic);
    if (place.record && place.record.partitions > 0 && !place.parent) {
      throw new InvalidArgumentError(
        `topic '${topic.full}' is partitioned (${place.record.partitions} partitions); use its partitions '${topic.full}-partition-<i>'`,
      );
    }
    await this.ownership.ensureOwned(place.bundleKey);
    const existing = this.topics.get(topic.full);
    if (existing) {
      const t = await existing;
      if (!t.isClosed) return t;
    }
    if (!place.record) {
      if (!opts.create) throw new NotFoundError(`topic '${topic.full}' does not exist`);
      await this.resources.createTopic(topic, 0, true);
    }
    const opening = this.openTopic(topic, place);
    this.topics.set(topic.full, opening);
    opening.then(
      (t) => this.loaded.set(topic.full, t),
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
        void this.unload(fenced.name, false);
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
