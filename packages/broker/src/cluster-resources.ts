import {
  AlreadyExistsError,
  BadVersionError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  retry,
} from '@sluice/common';
import type { MetadataStore, TxnOp, Versioned } from '@sluice/metadata';
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

/**
 * Set in a tenant's or namespace's stored value by a delete while it looks for
 * children (see `deleteParent`); readers strip it. A child create that sees it
 * writes the parent instead of only checking its version.
 */
const DELETING = 'deleting';
type Fields = Record<string, unknown>;
const unmarked = (fields: Fields): Fields => {
  const { [DELETING]: _, ...rest } = fields;
  return rest;
};

/** A parent changed under a create or delete of a child: re-read it, a bounded number of times. */
const PARENT_CHANGED_RETRY = {
  shouldRetry: (err: unknown) => err instanceof BadVersionError,
  retries: 10,
  minDelayMs: 10,
};

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
    await this.deleteParent(
      tenantKey(t),
      () => this.tenantEntry(t),
      namespacesPrefix(t),
      (n) => new FailedPreconditionError(`tenant '${t}' still has ${n} namespace(s); delete them first`),
    );
  }

  async listTenants(): Promise<string[]> {
    const items = await this.store.listAll(TENANTS_PREFIX, { keysOnly: true });
    return items.map((i) => i.key.slice(TENANTS_PREFIX.length)).filter((k) => !k.includes('/'));
  }

  async requireTenant(t: string): Promise<void> {
    await this.tenantEntry(t);
  }

  private async tenantEntry(t: string): Promise<Versioned> {
    const v = await this.store.get(tenantKey(t));
    if (!v) {
      throw new NotFoundError(`tenant '${t}' does not exist; create it with 'sluice tenants create ${t}'`);
    }
    return v;
  }

  async createNamespace(name: string, policies: PolicyValues = {}, ifNotExists = false): Promise<boolean> {
    const ns = parseNamespaceName(name);
    validatePolicies(policies, { allowBundles: true });
    try {
      await this.createChild(tenantKey(ns.tenant), () => this.tenantEntry(ns.tenant), {
        key: namespaceKey(ns.name),
        value: json(policies),
      });
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
    // Marking the namespace fires the brokers' policy watch with unchanged
    // policies (and so does clearing the mark when topics remain): a few
    // needless refreshes per delete, which is rare.
    await this.deleteParent(
      namespaceKey(ns.name),
      () => this.namespaceEntry(ns),
      topicsPrefix(ns.name),
      (n) => new FailedPreconditionError(`namespace '${ns.name}' still has ${n} topic(s); delete them first`),
    );
  }

  async listNamespaces(tenant: string): Promise<string[]> {
    const t = checkTenantName(tenant);
    await this.requireTenant(t);
    const items = await this.store.listAll(namespacesPrefix(t), { keysOnly: true });
    return items.map((i) => i.key.slice('namespaces/'.length));
  }

  private async namespaceRecord(ns: NamespaceName): Promise<{ policies: PolicyValues; version: number }> {
    const v = await this.namespaceEntry(ns);
    return { policies: unmarked(parse<Fields>(v.value)) as PolicyValues, version: v.version };
  }

  private async namespaceEntry(ns: NamespaceName): Promise<Versioned> {
    const v = await this.store.get(namespaceKey(ns.name));
    if (!v) {
      await this.requireTenant(ns.tenant);
      throw new NotFoundError(
        `namespace '${ns.name}' does not exist; create it with 'sluice namespaces create ${ns.name}'`,
      );
    }
    return v;
  }

  /**
   * Put `child` (createOnly) in one txn with a condition on its parent as
   * `readParent` found it, so that a delete of the parent cannot miss the
   * child. Throws what `readParent` throws (NotFoundError once the parent is
   * gone) and AlreadyExistsError when the child exists.
   */
  private async createChild(
    parentKey: string,
    readParent: () => Promise<Versioned>,
    child: { key: string; value: Buffer },
  ): Promise<void> {
    await retry(async () => {
      const parent = await readParent();
      const fields = parse<Fields>(parent.value);
      // A marked parent may have a delete between listing children and
      // deleting it: writing the parent fails that delete, which looks again.
      const guard: TxnOp =
        DELETING in fields
          ? { op: 'put', key: parentKey, value: json(unmarked(fields)), expectedVersion: parent.version }
          : { op: 'check', key: parentKey, expectedVersion: parent.version };
      // Both stores report the first condition that failed, so with the
      // parent's first a BadVersionError always means the parent changed
      // (re-read it); AlreadyExistsError comes only from the child's createOnly.
      await this.store.txn([guard, { op: 'put', key: child.key, value: child.value, createOnly: true }]);
    }, PARENT_CHANGED_RETRY);
  }

  /**
   * Delete a parent only while nothing is under `childrenPrefix`. No txn can
   * compare a whole prefix, so: mark the parent (a compare-and-swap on the
   * version read, which fails the txn of any child create that read it
   * before), list the children, then delete the parent at the marked version.
   * A child create that read the parent after the mark writes the parent
   * (see `createChild`), so that delete fails and the next attempt lists
   * again. Merely re-putting the same value would not do: a create reading
   * the re-put version, then committing between the list and the delete,
   * would leave an orphan. A mark left by a delete that failed midway costs
   * the next child create one extra write, which clears it.
   */
  private async deleteParent(
    parentKey: string,
    readParent: () => Promise<Versioned>,
    childrenPrefix: string,
    notEmpty: (children: number) => Error,
  ): Promise<void> {
    await retry(async () => {
      const parent = await readParent();
      const fields = unmarked(parse<Fields>(parent.value));
      const marked = await this.store.put(parentKey, json({ ...fields, [DELETING]: true }), {
        expectedVersion: parent.version,
      });
      const children = await this.store.listAll(childrenPrefix, { keysOnly: true });
      if (children.length > 0) {
        await this.store.put(parentKey, json(fields), { expectedVersion: marked }).catch((err: unknown) => {
          // Whoever wrote the parent since the mark cleared it (or marked it for its own delete).
          if (!(err instanceof BadVersionError)) throw err;
        });
        throw notEmpty(children.length);
      }
      await this.store.delete(parentKey, { expectedVersion: marked });
    }, PARENT_CHANGED_RETRY);
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
    const ns = parseNamespaceName(topic.namespaceName);
    try {
      await this.createChild(namespaceKey(ns.name), () => this.namespaceEntry(ns), {
        key: topicKey(topic.path),
        value: json({ partitions, policies: {} } satisfies TopicRecord),
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
