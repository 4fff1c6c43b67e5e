import { AlreadyExistsError, FailedPreconditionError, NotFoundError, UnavailableError } from '@sluice/common';
import type { MetadataStore, TxnOp } from '@sluice/metadata';
import test, { type ExecutionContext } from 'ava';
import { ClusterResources } from './cluster-resources.js';
import { namespaceKey, namespacesPrefix, tenantKey, topicKey, topicsPrefix } from './metadata-keys.js';
import { embeddedStore } from './test-support/broker-rig.js';
import { parseTopicName } from './topic-name.js';

type Match = (method: string, args: unknown[]) => boolean;

interface Gate {
  /** Resolves when the held call arrives (it waits, not yet run). */
  reached: Promise<void>;
  release(): void;
}

/**
 * A store whose calls a test can hold: `hold(match)` stops the first later
 * call that matches before it runs, until `release()`; `fail(match, err)`
 * makes the first later matching call throw instead of running.
 */
function gatedStore(store: MetadataStore) {
  const rules: { match: Match; run: () => Promise<void> }[] = [];
  const proxy = new Proxy(store, {
    get(target, prop) {
      const member = Reflect.get(target, prop, target) as unknown;
      if (typeof member !== 'function') return member;
      return async (...args: unknown[]) => {
        const i = rules.findIndex((r) => r.match(String(prop), args));
        if (i >= 0) await rules.splice(i, 1)[0]!.run();
        // The real target as `this`: calls the store makes on itself are not held.
        return (member as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  const hold = (match: Match): Gate => {
    let arrived!: () => void;
    let release!: () => void;
    const reached = new Promise<void>((r) => {
      arrived = r;
    });
    const released = new Promise<void>((r) => {
      release = r;
    });
    rules.push({
      match,
      run: async () => {
        arrived();
        await released;
      },
    });
    return { reached, release };
  };
  const fail = (match: Match, err: Error): void => {
    rules.push({ match, run: () => Promise.reject(err) });
  };
  return { store: proxy, hold, fail };
}

const txnOps = (method: string, args: unknown[]): TxnOp[] => (method === 'txn' ? (args[0] as TxnOp[]) : []);
/** A put of `key`, alone or in a txn (the old code put a child directly, the new one in a txn). */
const writes =
  (key: string): Match =>
  (method, args) =>
    (method === 'put' && args[0] === key) ||
    txnOps(method, args).some((o) => o.op === 'put' && o.key === key);
/** A delete of `key`, alone or in a txn. */
const deletes =
  (key: string): Match =>
  (method, args) =>
    (method === 'delete' && args[0] === key) ||
    txnOps(method, args).some((o) => o.op === 'delete' && o.key === key);
const lists =
  (prefix: string): Match =>
  (method, args) =>
    (method === 'list' || method === 'listAll') && args[0] === prefix;

async function rig(t: ExecutionContext) {
  const base = await embeddedStore(t);
  const gated = gatedStore(base);
  const resources = new ClusterResources(gated.store, { ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 });
  return { ...gated, base, resources };
}

type Outcome = { ok: true } | { ok: false; err: unknown };
const outcome = (p: Promise<unknown>): Promise<Outcome> =>
  p.then(
    () => ({ ok: true }) as const,
    (err: unknown) => ({ ok: false, err }) as const,
  );

/** Exactly one of a racing create and delete of its parent won, and no child is left under a missing parent. */
async function oneWon(
  t: ExecutionContext,
  store: MetadataStore,
  created: Outcome,
  deleted: Outcome,
  keys: { parent: string; child: string },
): Promise<void> {
  if (created.ok) {
    t.false(deleted.ok, 'both the create and the delete of its parent succeeded');
    if (!deleted.ok) t.true(deleted.err instanceof FailedPreconditionError, String(deleted.err));
  } else {
    t.true(created.err instanceof NotFoundError, String(created.err));
    t.true(deleted.ok, deleted.ok ? '' : String(deleted.err));
  }
  const parent = await store.get(keys.parent);
  const child = await store.get(keys.child);
  t.false(parent === undefined && child !== undefined, `orphan ${keys.child} under a deleted parent`);
}

// Tenant → namespace.

async function tenantRig(t: ExecutionContext) {
  const r = await rig(t);
  await r.resources.createTenant('acme');
  return { ...r, keys: { parent: tenantKey('acme'), child: namespaceKey('acme/orders') } };
}

test('cluster resources - a namespace create that read the tenant before a delete listed its namespaces', async (t) => {
  const { resources, hold, base, keys } = await tenantRig(t);
  const write = hold(writes(keys.child));
  const creating = outcome(resources.createNamespace('acme/orders'));
  await write.reached;
  const deleted = await outcome(resources.deleteTenant('acme'));
  write.release();
  await oneWon(t, base, await creating, deleted, keys);
});

test('cluster resources - a namespace created between the tenant delete listing namespaces and deleting', async (t) => {
  const { resources, hold, base, keys } = await tenantRig(t);
  const del = hold(deletes(keys.parent));
  const deleting = outcome(resources.deleteTenant('acme'));
  await del.reached;
  const created = await outcome(resources.createNamespace('acme/orders'));
  del.release();
  await oneWon(t, base, created, await deleting, keys);
});

test('cluster resources - a namespace create that read the tenant early writes after the delete listed', async (t) => {
  const { resources, hold, base, keys } = await tenantRig(t);
  const write = hold(writes(keys.child));
  const creating = outcome(resources.createNamespace('acme/orders'));
  await write.reached;
  const del = hold(deletes(keys.parent));
  const deleting = outcome(resources.deleteTenant('acme'));
  await del.reached;
  write.release();
  const created = await creating;
  del.release();
  await oneWon(t, base, created, await deleting, keys);
});

test('cluster resources - a tenant delete that lists after the namespace was created fails', async (t) => {
  const { resources, hold } = await tenantRig(t);
  const list = hold(lists(namespacesPrefix('acme')));
  const deleting = resources.deleteTenant('acme');
  await list.reached;
  t.true(await resources.createNamespace('acme/orders'));
  list.release();
  await t.throwsAsync(deleting, {
    instanceOf: FailedPreconditionError,
    message: "tenant 'acme' still has 1 namespace(s); delete them first",
  });
  t.deepEqual(await resources.listNamespaces('acme'), ['acme/orders']);
  t.deepEqual(await resources.listTenants(), ['acme']);
});

// Namespace → topic.

async function namespaceRig(t: ExecutionContext) {
  const r = await rig(t);
  await r.resources.createTenant('acme');
  await r.resources.createNamespace('acme/orders', { messageTtlMs: 60_000 });
  const topic = parseTopicName('acme/orders/eu');
  return { ...r, topic, keys: { parent: namespaceKey('acme/orders'), child: topicKey(topic.path) } };
}

test('cluster resources - a topic create that read the namespace before a delete listed its topics', async (t) => {
  const { resources, hold, base, topic, keys } = await namespaceRig(t);
  const write = hold(writes(keys.child));
  const creating = outcome(resources.createTopic(topic, 0));
  await write.reached;
  const deleted = await outcome(resources.deleteNamespace('acme/orders'));
  write.release();
  await oneWon(t, base, await creating, deleted, keys);
});

test('cluster resources - a topic created between the namespace delete listing topics and deleting', async (t) => {
  const { resources, hold, base, topic, keys } = await namespaceRig(t);
  const del = hold(deletes(keys.parent));
  const deleting = outcome(resources.deleteNamespace('acme/orders'));
  await del.reached;
  const created = await outcome(resources.createTopic(topic, 4));
  del.release();
  await oneWon(t, base, created, await deleting, keys);
});

test('cluster resources - a topic create that read the namespace early writes after the delete listed', async (t) => {
  const { resources, hold, base, topic, keys } = await namespaceRig(t);
  const write = hold(writes(keys.child));
  const creating = outcome(resources.createTopic(topic, 0));
  await write.reached;
  const del = hold(deletes(keys.parent));
  const deleting = outcome(resources.deleteNamespace('acme/orders'));
  await del.reached;
  write.release();
  const created = await creating;
  del.release();
  await oneWon(t, base, created, await deleting, keys);
});

test('cluster resources - a namespace delete that lists after the topic was created fails and keeps its policies', async (t) => {
  const { resources, hold, topic } = await namespaceRig(t);
  const list = hold(lists(topicsPrefix('acme/orders')));
  const deleting = resources.deleteNamespace('acme/orders');
  await list.reached;
  t.true(await resources.createTopic(topic, 0));
  list.release();
  await t.throwsAsync(deleting, {
    instanceOf: FailedPreconditionError,
    message: "namespace 'acme/orders' still has 1 topic(s); delete them first",
  });
  const policies = await resources.namespacePolicies('acme/orders');
  t.is(policies.messageTtlMs, 60_000);
  t.false('deleting' in policies);
});

test('cluster resources - a namespace delete that failed midway leaves the namespace usable', async (t) => {
  const { resources, fail, base, topic, keys } = await namespaceRig(t);
  fail(lists(topicsPrefix('acme/orders')), new UnavailableError('metadata store unreachable'));
  await t.throwsAsync(resources.deleteNamespace('acme/orders'), { instanceOf: UnavailableError });
  const policies = await resources.namespacePolicies('acme/orders');
  t.is(policies.messageTtlMs, 60_000);
  t.false('deleting' in policies);
  t.true(await resources.createTopic(topic, 0));
  t.truthy(await base.get(keys.child));
  await t.throwsAsync(resources.deleteNamespace('acme/orders'), { instanceOf: FailedPreconditionError });
  await resources.deleteTopicRecord(topic);
  await resources.deleteNamespace('acme/orders');
  t.is(await base.get(keys.parent), undefined);
});

test('cluster resources - a topic create retries when the namespace policies change meanwhile', async (t) => {
  const { resources, hold, base, topic, keys } = await namespaceRig(t);
  const write = hold(writes(keys.child));
  const creating = resources.createTopic(topic, 2);
  await write.reached;
  await resources.setNamespacePolicies('acme/orders', { messageTtlMs: 1000 });
  write.release();
  t.true(await creating);
  t.truthy(await base.get(keys.child));
  t.is((await resources.namespacePolicies('acme/orders')).messageTtlMs, 1000);
});

// Unchanged answers.

test('cluster resources - creating under a missing parent names what to create', async (t) => {
  const { resources } = await rig(t);
  await t.throwsAsync(resources.createNamespace('ghost/ns'), {
    instanceOf: NotFoundError,
    message: "tenant 'ghost' does not exist; create it with 'sluice tenants create ghost'",
  });
  await resources.createTenant('acme');
  await t.throwsAsync(resources.createTopic(parseTopicName('acme/ns/t'), 0), {
    instanceOf: NotFoundError,
    message: "namespace 'acme/ns' does not exist; create it with 'sluice namespaces create acme/ns'",
  });
  await t.throwsAsync(resources.createTopic(parseTopicName('ghost/ns/t'), 0), {
    instanceOf: NotFoundError,
    message: "tenant 'ghost' does not exist; create it with 'sluice tenants create ghost'",
  });
});

test('cluster resources - creating what exists fails unless ifNotExists', async (t) => {
  const { resources } = await rig(t);
  await resources.createTenant('acme');
  t.true(await resources.createNamespace('acme/ns'));
  await t.throwsAsync(resources.createNamespace('acme/ns'), {
    instanceOf: AlreadyExistsError,
    message: "namespace 'acme/ns' already exists",
  });
  t.false(await resources.createNamespace('acme/ns', {}, true));
  const topic = parseTopicName('acme/ns/t');
  t.true(await resources.createTopic(topic, 0));
  await t.throwsAsync(resources.createTopic(topic, 0), {
    instanceOf: AlreadyExistsError,
    message: "topic 'persistent://acme/ns/t' already exists",
  });
  t.false(await resources.createTopic(topic, 0, true));
});

test('cluster resources - deleting a missing or non-empty parent', async (t) => {
  const { resources } = await rig(t);
  await t.throwsAsync(resources.deleteTenant('ghost'), { instanceOf: NotFoundError });
  await resources.createTenant('acme');
  await t.throwsAsync(resources.deleteNamespace('acme/ns'), {
    instanceOf: NotFoundError,
    message: "namespace 'acme/ns' does not exist; create it with 'sluice namespaces create acme/ns'",
  });
  await resources.createNamespace('acme/ns');
  await t.throwsAsync(resources.deleteTenant('acme'), {
    instanceOf: FailedPreconditionError,
    message: "tenant 'acme' still has 1 namespace(s); delete them first",
  });
  await resources.deleteNamespace('acme/ns');
  await resources.deleteTenant('acme');
  t.deepEqual(await resources.listTenants(), []);
});
