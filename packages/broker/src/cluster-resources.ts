import {
  AlreadyExistsError,
  BadVersionError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  retry,
} from '@sluice/common';
import type { MetadataStore } from '@sluice/metadata';
import {
  namespaceKey,
  namespacesPrefix,
  TENANTS_PREFIX,
  tenantKey,
  topicKey,
  topicsPrefix,
} from './metadata-keys.js';
import {
  defaultPolicies,
  type EffectivePolicies,
  mergePolicies,
  type PersistencePolicy,
  type PolicyValues,
  validatePolicies,
} from './policies.js';
import { checkTenantName, type NamespaceName, parseNamespaceName, type TopicName } from './topic-name.js';

export interface TopicRecord {
  /** 0 = not partitioned. */
  partitions: number;
  policies: PolicyValues;
  /**
   * Set while UpdatePartitions copies the existing subscriptions onto added
   * partitions: the first partition that may still lack them. Kept until the
   * copy finishes, so a retry with the same count knows what to finish.
   */
  subscriptionsPendingFrom?: number;
}

const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
const parse = <T>(b: Buffer): T => JSON.parse(b.toString('utf8')) as T;

/** Tenants, namespaces and topics as stored in metadata (DESIGN §3). */
export class ClusterResources {
  constructor(
    private readonly store: MetadataStore,
    /** Persistence for namespaces created without one. */
    private readonly defaultPersistence: PersistencePolicy,
  ) {}

  defaults(): EffectivePolicies {
    return defaultPolicies(this.defaultPersistence);
  }

  async createTenant(name: string, ifNotExists = false): Promise<boolean> {
    const t = checkTenantName(name);
    try {
      await this.store.put(tenantKey(t), json({ createdAt: Date.now() }), { createOnly: true });
      return true;
    } catch (err) {
      if (err instanceof AlreadyExistsError) {
        if (ifNotExists) return false;
        throw new AlreadyExistsError(`tenant '${t}' already exists`);
      }
      throw err;
    }
  }

  async deleteTenant(name: string): Promise<void> {
    const t = checkTenantName(name);
    await this.requireTenant(t);
    const namespaces = await this.store.listAll(namespacesPrefix(t), { keysOnly: true });
    if (namespaces.length > 0) {
      throw new FailedPreconditionError(
        `tenant '${t}' still has ${namespaces.length} namespace(s); delete them first`,
      );
    }
    await this.store.delete(tenantKey(t));
  }

  async listTenants(): Promise<string[]> {
    const items = await this.store.listAll(TENANTS_PREFIX, { keysOnly: true });
    return items.map((i) => i.key.slice(TENANTS_PREFIX.length)).filter((k) => !k.includes('/'));
  }

  async requireTenant(t: string): Promise<void> {
    if (!(await this.store.get(tenantKey(t)))) {
      throw new NotFoundError(`tenant '${t}' does not exist; create it with 'sluice tenants create ${t}'`);
    }
  }

  async createNamespace(name: string, policies: PolicyValues = {}, ifNotExists = false): Promise<boolean> {
    const ns = parseNamespaceName(name);
    validatePolicies(policies, { allowBundles: true });
    await this.requireTenant(ns.tenant);
    try {
      await this.store.put(namespaceKey(ns.name), json(policies), { createOnly: true });
      return true;
    } catch (err) {
      if (err instanceof AlreadyExistsError) {
        if (ifNotExists) return false;
        throw new AlreadyExistsError(`namespace '${ns.name}' already exists`);
      }
      throw err;
    }
  }

  async deleteNamespace(name: string): Promise<void> {
    const ns = parseNamespaceName(name);
    await this.namespaceRecord(ns);
    const topics = await this.store.listAll(topicsPrefix(ns.name), { keysOnly: true });
    if (topics.length > 0) {
      throw new FailedPreconditionError(
        `namespace '${ns.name}' still has ${topics.length} topic(s); delete them first`,
      );
    }
    await this.store.delete(namespaceKey(ns.name));
  }

  async listNamespaces(tenant: string): Promise<string[]> {
    const t = checkTenantName(tenant);
    await this.requireTenant(t);
    const items = await this.store.listAll(namespacesPrefix(t), { keysOnly: true });
    return items.map((i) => i.key.slice('namespaces/'.length));
  }

  private async namespaceRecord(ns: NamespaceName): Promise<{ policies: PolicyValues; version: number }> {
    const v = await this.store.get(namespaceKey(ns.name));
    if (!v) {
      await this.requireTenant(ns.tenant);
      throw new NotFoundError(
        `namespace '${ns.name}' does not exist; create it with 'sluice namespaces create ${ns.name}'`,
      );
    }
    return { policies: parse<PolicyValues>(v.value), version: v.version };
  }

  /** The namespace's policies with every field resolved against the defaults. */
  async namespacePolicies(name: string): Promise<EffectivePolicies> {
    const ns = parseNamespaceName(name);
    const rec = await this.namespaceRecord(ns);
    return mergePolicies(this.defaults(), rec.policies);
  }

  async setNamespacePolicies(name: string, changes: PolicyValues): Promise<EffectivePolicies> {
    const ns = parseNamespaceName(name);
    validatePolicies(changes, { allowBundles: false });
    return retry(
      async () => {
        const rec = await this.namespaceRecord(ns);
        const next = mergePolicies(rec.policies, changes);
        await this.store.put(namespaceKey(ns.name), json(next), { expectedVersion: rec.version });
        return mergePolicies(this.defaults(), next);
      },
      { shouldRetry: (err) => err instanceof BadVersionError, retries: 20, minDelayMs: 10 },
    );
  }

  async getTopic(topic: TopicName): Promise<TopicRecord | undefined> {
    const v = await this.store.get(topicKey(topic.path));
    return v ? parse<TopicRecord>(v.value) : undefined;
  }

  /** Creates the topic record; partitioned topics get one record for the whole topic. */
  async createTopic(topic: TopicName, partitions: number, ifNotExists = false): Promise<boolean> {
    if (!Number.isSafeInteger(partitions) || partitions < 0 || partitions > 10_000) {
      throw new InvalidArgumentError(`partitions=${partitions} is invalid; use 0 (not partitioned) to 10000`);
    }
    if (topic.partition >= 0 && partitions > 0) {
      throw new InvalidArgumentError(
        `'${topic.full}' names a partition; a partition cannot itself be partitioned`,
      );
    }
    await this.namespacePolicies(topic.namespaceName);
    try {
      await this.store.put(topicKey(topic.path), json({ partitions, policies: {} } satisfies TopicRecord), {
        createOnly: true,
      });
      return true;
    } catch (err) {
      if (err instanceof AlreadyExistsError) {
        if (ifNotExists) return false;
        throw new AlreadyExistsError(`topic '${topic.full}' already exists`);
      }
      throw err;
    }
  }

  async deleteTopicRecord(topic: TopicName): Promise<void> {
    await this.store.delete(topicKey(topic.path));
  }

  /**
   * Grow a partitioned topic to `partitions`. The same count is accepted as the
   * retry of a grow whose subscription copy failed. Returns the first
   * partition that still needs the existing subscriptions: the lower of
   * `pendingFrom` and what an unfinished earlier grow left (`partitions` when
   * none is needed); `finishPartitionUpdate` clears it once they exist.
   */
  async updatePartitions(topic: TopicName, partitions: number, pendingFrom: number): Promise<number> {
    const v = await this.store.get(topicKey(topic.path));
    if (!v) throw new NotFoundError(`topic '${topic.full}' does not exist`);
    const rec = parse<TopicRecord>(v.value);
    if (rec.partitions === 0) throw new FailedPreconditionError(`topic '${topic.full}' is not partitioned`);
    if (!Number.isSafeInteger(partitions) || partitions < rec.partitions || partitions > 10_000) {
      throw new InvalidArgumentError(
        `partitions=${partitions} is invalid; it must be at least the current ${rec.partitions} (the same count retries an unfinished update) and at most 10000`,
      );
    }
    const from = Math.min(pendingFrom, rec.subscriptionsPendingFrom ?? rec.partitions);
    if (partitions === rec.partitions && rec.subscriptionsPendingFrom === undefined) return partitions;
    if (partitions !== rec.partitions || from !== rec.subscriptionsPendingFrom) {
      const next: TopicRecord = { ...rec, partitions, subscriptionsPendingFrom: from };
      await this.store.put(topicKey(topic.path), json(next), { expectedVersion: v.version });
    }
    return from;
  }

  /** The subscriptions of partitions `from`..`partitions`-1 exist: forget that they were pending. */
  async finishPartitionUpdate(topic: TopicName, partitions: number, from: number): Promise<void> {
    await retry(
      async () => {
        const v = await this.store.get(topicKey(topic.path));
        if (!v) return;
        const rec = parse<TopicRecord>(v.value);
        // A grow that started since then (to more partitions, or from lower) clears it when it finishes.
        if (rec.partitions !== partitions || rec.subscriptionsPendingFrom !== from) return;
        const { subscriptionsPendingFrom: _, ...done } = rec;
        await this.store.put(topicKey(topic.path), json(done), { expectedVersion: v.version });
      },
      { shouldRetry: (err) => err instanceof BadVersionError, retries: 20, minDelayMs: 10 },
    );
  }

  async listTopics(name: string): Promise<{ topic: string; partitions: number }[]> {
    const ns = parseNamespaceName(name);
    await this.namespaceRecord(ns);
    const items = await this.store.listAll(topicsPrefix(ns.name));
    return items.map((i) => ({
      topic: `persistent://${i.key.slice('topics/'.length)}`,
      partitions: parse<TopicRecord>(i.value).partitions,
    }));
  }

  async setTopicPolicies(topic: TopicName, changes: PolicyValues): Promise<void> {
    validatePolicies(changes, { allowBundles: false });
    if (changes.bundles !== undefined) throw new InvalidArgumentError('bundles is a namespace policy');
    await retry(
      async () => {
        const v = await this.store.get(topicKey(topic.path));
        if (!v) throw new NotFoundError(`topic '${topic.full}' does not exist`);
        const rec = parse<TopicRecord>(v.value);
        const next: TopicRecord = { ...rec, policies: mergePolicies(rec.policies ?? {}, changes) };
        await this.store.put(topicKey(topic.path), json(next), { expectedVersion: v.version });
      },
      { shouldRetry: (err) => err instanceof BadVersionError, retries: 20, minDelayMs: 10 },
    );
  }

  /** Effective policies of a topic: defaults ← namespace ← topic (its partitioned parent's record). */
  async topicPolicies(topic: TopicName, record?: TopicRecord): Promise<EffectivePolicies> {
    const ns = await this.namespacePolicies(topic.namespaceName);
    return mergePolicies(ns, record?.policies ?? {});
  }
}
