import { Metadata, type ServerUnaryCall } from '@grpc/grpc-js';
import {
  FailedPreconditionError,
  formatPosition,
  InvalidArgumentError,
  type Logger,
  NotFoundError,
  type Position,
} from '@sluice/common';
import type {
  GetTopicInternalStatsResponse,
  GetTopicStatsResponse,
  ResetSubscriptionRequest__Output,
  SubscriptionStats,
} from '@sluice/proto';
import type { AdminClientPool } from './admin-client-pool.js';
import type { ClusterResources, TopicRecord } from './cluster-resources.js';
import { SUBSCRIPTION_TYPE_NAMES } from './consumer-service.js';
import { oneofCase, unary } from './grpc-util.js';
import type { Ownership, SelfIdentity } from './ownership.js';
import { pickSetPolicies } from './policies.js';
import type { Topic } from './topic.js';
import type { TopicManager } from './topic-manager.js';
import { checkSubscriptionName, parseTopicName, partitionName, type TopicName } from './topic-name.js';

export interface AdminDeps {
  resources: ClusterResources;
  topics: TopicManager;
  ownership: Ownership;
  self: SelfIdentity;
  clients: AdminClientPool;
  logger: Logger;
}

/** Marks a call forwarded by another broker: it is served here or refused, never forwarded again. */
export const FORWARDED_METADATA_KEY = 'sluice-forwarded';

type AnyReq = Record<string, unknown> & { topic?: string };

/**
 * AdminService. Tenant/namespace calls work on any broker; topic calls run on
 * the topic's owner: this broker serves them when it owns (or can acquire)
 * the bundle, otherwise it forwards the call to the owner.
 */
export function createAdminService(d: AdminDeps) {
  const u = <Req, Res>(fn: (req: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res>) =>
    unary(d.logger, fn);

  /** The partitions a topic-level call applies to (the topic itself when not partitioned). */
  async function expand(text: string): Promise<TopicName[]> {
    const topic = parseTopicName(text);
    await d.resources.namespacePolicies(topic.namespaceName);
    if (topic.partition < 0) {
      const rec = await d.resources.getTopic(topic);
      if (rec && rec.partitions > 0)
        return Array.from({ length: rec.partitions }, (_, i) => partitionName(topic, i));
    }
    return [topic];
  }

  /** Run `local` on the owner of `topic`: here, or forwarded as `method` with the topic rewritten. */
  async function onOwner<Res>(
    topic: TopicName,
    method: string,
    req: AnyReq,
    call: ServerUnaryCall<unknown, unknown>,
    local: (t: Topic) => Promise<Res>,
    create = true,
  ): Promise<Res> {
    if (!isForwarded(call)) {
      const place = await d.topics.placement(topic);
      if (!d.ownership.owns(place.bundleKey)) {
        const owner = await d.ownership.read(place.bundleKey);
        if (owner && owner.brokerId !== d.self.brokerId) {
          const md = new Metadata();
          md.set(FORWARDED_METADATA_KEY, d.self.brokerId);
          return d.clients.call<Res>(owner.address, method, { ...req, topic: topic.full }, md);
        }
      }
    }
    return local(await d.topics.acquire(topic, { create }));
  }

  function isForwarded(call: ServerUnaryCall<unknown, unknown>): boolean {
    return call.metadata.get(FORWARDED_METADATA_KEY).length > 0;
  }

  /**
   * The record governing a topic DeleteTopic is asked to delete. Partitions of
   * a partitioned topic have no record of their own: the broker deleting the
   * whole topic forwards each partition to its owner, which finds the
   * partitioned topic's record instead. A client naming one partition is
   * refused, since deleting it alone would leave a hole in the topic.
   */
  async function deletableRecord(topic: TopicName, forwarded: boolean): Promise<TopicRecord> {
    const own = await d.resources.getTopic(topic);
    if (own) return own;
    if (topic.partition >= 0) {
      const parent = await d.resources.getTopic(parseTopicName(topic.base));
      if (parent && topic.partition < parent.partitions) {
        if (forwarded) return parent;
        throw new InvalidArgumentError(
          `'${topic.full}' is partition ${topic.partition} of '${topic.base}'; delete '${topic.base}' to delete all its partitions`,
        );
      }
    }
    throw new NotFoundError(`topic '${topic.full}' does not exist`);
  }

  function connectedConsumers(s: GetTopicStatsResponse): number {
    return (s.subscriptions ?? []).reduce((n, x) => n + Number(x.consumers ?? 0), 0);
  }

  function refuseWhileConnected(part: TopicName, producers: number, consumers: number): void {
    if (producers > 0 || consumers > 0) {
      throw new FailedPreconditionError(
        `topic '${part.full}' has ${producers} producer(s) and ${consumers} consumer(s) connected; disconnect them or delete with force`,
      );
    }
  }

  function localStats(t: Topic): GetTopicStatsResponse {
    const s = t.log.stats();
    const subscriptions: SubscriptionStats[] = t.subscriptionNames().map((name) => {
      const cursor = s.cursors.find((c) => c.name === name);
      const sub = t.subscriptions.get(name);
      return {
        name,
        type: SUBSCRIPTION_TYPE_NAMES[sub?.kind ?? 'exclusive'] as SubscriptionStats['type'],
        backlog: cursor?.backlog ?? 0,
        consumers: sub?.consumerCount() ?? 0,
        msgRateOut: t.rates.subOut.get(name) ?? 0,
        unacked: sub?.unackedMessages() ?? 0,
      };
    });
    return {
      msgRateIn: t.rates.msgIn,
      bytesRateIn: t.rates.bytesIn,
      msgRateOut: t.rates.msgOut,
      bytesRateOut: t.rates.bytesOut,
      storageBytes: s.storageBytes,
      offloadedBytes: s.offloadedBytes,
      entries: s.entries,
      backlog: subscriptions.reduce((m, x) => Math.max(m, Number(x.backlog)), 0),
      producers: t.producers.size,
      subscriptions,
    };
  }

  function sumStats(parts: GetTopicStatsResponse[]): GetTopicStatsResponse {
    const out: GetTopicStatsResponse = {
      msgRateIn: 0,
      bytesRateIn: 0,
      msgRateOut: 0,
      bytesRateOut: 0,
      storageBytes: 0,
      offloadedBytes: 0,
      entries: 0,
      backlog: 0,
      producers: 0,
      subscriptions: [],
    };
    const subs = new Map<string, SubscriptionStats>();
    for (const p of parts) {
      for (const k of [
        'msgRateIn',
        'bytesRateIn',
        'msgRateOut',
        'bytesRateOut',
        'storageBytes',
        'offloadedBytes',
        'entries',
        'producers',
      ] as const) {
        (out as Record<string, number>)[k] = Number(out[k] ?? 0) + Number(p[k] ?? 0);
      }
      for (const s of p.subscriptions ?? []) {
        const cur = subs.get(s.name!);
        if (!cur) subs.set(s.name!, { ...s });
        else {
          cur.backlog = Number(cur.backlog) + Number(s.backlog);
          cur.consumers = Number(cur.consumers) + Number(s.consumers);
          cur.msgRateOut = Number(cur.msgRateOut) + Number(s.msgRateOut);
          cur.unacked = Number(cur.unacked) + Number(s.unacked);
        }
      }
    }
    out.subscriptions = [...subs.values()];
    out.backlog = out.subscriptions.reduce((m, x) => Math.max(m, Number(x.backlog)), 0);
    return out;
  }

  async function resetTarget(t: Topic, req: ResetSubscriptionRequest__Output): Promise<Position> {
    const which = oneofCase(req, 'target');
    if (which === 'messageId' && req.messageId) {
      const p = { ledgerId: Number(req.messageId.ledgerId), entryId: Number(req.messageId.entryId) };
      if (
        !Number.isSafeInteger(p.ledgerId) ||
        p.ledgerId < 0 ||
        !Number.isSafeInteger(p.entryId) ||
        p.entryId < 0
      ) {
        throw new InvalidArgumentError(`message id ${p.ledgerId}:${p.entryId} is malformed`);
      }
      return p;
    }
    if (which === 'publishTime') return t.seekByTime(Number(req.publishTime));
    throw new InvalidArgumentError('reset needs a message_id or a publish_time');
  }

  return {
    CreateTenant: u(async (req: { tenant: string; ifNotExists: boolean }) => {
      await d.resources.createTenant(req.tenant, req.ifNotExists);
      return {};
    }),
    DeleteTenant: u(async (req: { tenant: string }) => {
      await d.resources.deleteTenant(req.tenant);
      return {};
    }),
    ListTenants: u(async () => ({ tenants: await d.resources.listTenants() })),
    CreateNamespace: u(async (req: { namespace: string; policies: unknown; ifNotExists: boolean }) => {
      await d.resources.createNamespace(req.namespace, pickSetPolicies(req.policies), req.ifNotExists);
      return {};
    }),
    DeleteNamespace: u(async (req: { namespace: string }) => {
      await d.resources.deleteNamespace(req.namespace);
      return {};
    }),
    ListNamespaces: u(async (req: { tenant: string }) => ({
      namespaces: await d.resources.listNamespaces(req.tenant),
    })),
    GetNamespacePolicies: u(async (req: { namespace: string }) => ({
      policies: await d.resources.namespacePolicies(req.namespace),
    })),
    SetNamespacePolicies: u(async (req: { namespace: string; policies: unknown }) => ({
      policies: await d.resources.setNamespacePolicies(req.namespace, pickSetPolicies(req.policies)),
    })),
    CreateTopic: u(async (req: { topic: string; partitions: number; ifNotExists: boolean }) => {
      await d.resources.createTopic(parseTopicName(req.topic), req.partitions, req.ifNotExists);
      return {};
    }),
    DeleteTopic: u(async (req: { topic: string; force: boolean }, call) => {
      const topic = parseTopicName(req.topic);
      const rec = await deletableRecord(topic, isForwarded(call));
      const parts = await expand(req.topic);
      // Check every partition before deleting any: a refusal must leave the topic whole, not half deleted.
      if (!req.force && parts.length > 1) {
        for (const part of parts) {
          const s = await onOwner(
            part,
            'GetTopicStats',
            { topic: part.full },
            call,
            async (t) => localStats(t),
            false,
          );
          refuseWhileConnected(part, Number(s.producers ?? 0), connectedConsumers(s));
        }
      }
      for (const part of parts) {
        await onOwner(
          part,
          'DeleteTopic',
          req,
          call,
          async (t) => {
            // Checked again here: a client that connected since the check above is not cut off without force.
            if (!req.force) {
              const consumers = [...t.subscriptions.values()].reduce((n, s) => n + s.consumerCount(), 0);
              refuseWhileConnected(part, t.producers.size, consumers);
            }
            await t.deleteData();
            d.topics.forget(part);
            return {};
          },
          false,
        );
      }
      if (topic.partition < 0 || rec.partitions === 0) await d.resources.deleteTopicRecord(topic);
      return {};
    }),
    ListTopics: u(async (req: { namespace: string }) => ({
      topics: await d.resources.listTopics(req.namespace),
    })),
    UpdatePartitions: u(async (req: { topic: string; partitions: number }, call) => {
      const topic = parseTopicName(req.topic);
      const rec = await d.resources.getTopic(topic);
      // Partitions from here on were added by a grow that may not have copied the subscriptions yet.
      const pendingFrom = rec?.subscriptionsPendingFrom ?? rec?.partitions ?? 0;
      // Read the subscriptions first: once the count grows, producers may use the new partitions.
      const names = new Set<string>();
      for (let i = 0; i < pendingFrom; i++) {
        const part = partitionName(topic, i);
        const r = await onOwner(
          part,
          'ListSubscriptions',
          { topic: part.full },
          call,
          async (t) => ({ subscriptions: t.subscriptionNames() }),
          false,
        ).catch((err: unknown) => {
          // A partition nobody used yet has no log and so no subscriptions.
          if (err instanceof NotFoundError) return { subscriptions: [] as string[] };
          throw err;
        });
        for (const n of r.subscriptions) names.add(n);
      }
      // The record keeps `from` until every subscription exists, so a failure below is retried
      // by calling again with the same count.
      const from = await d.resources.updatePartitions(topic, req.partitions, pendingFrom);
      // New partitions hold only messages sent after the change: every existing
      // subscription starts at their beginning, so its consumers miss none of them.
      const create = {
        subscription: '',
        initialPosition: 'INITIAL_POSITION_EARLIEST',
      };
      for (let i = from; i < req.partitions; i++) {
        const part = partitionName(topic, i);
        for (const subscription of names) {
          await onOwner(
            part,
            'CreateSubscription',
            { ...create, topic: part.full, subscription },
            call,
            async (t) => {
              await t.createSubscription(subscription, 'earliest');
              return {};
            },
          );
        }
      }
      if (from < req.partitions) await d.resources.finishPartitionUpdate(topic, req.partitions, from);
      if (names.size > 0 && from < req.partitions)
        d.logger.info(
          { topic: topic.full, from, to: req.partitions, subscriptions: names.size },
          'partitions added; existing subscriptions created on them',
        );
      return {};
    }),
    GetTopicStats: u(async (req: AnyReq, call) => {
      const parts = await expand(String(req.topic));
      const stats: GetTopicStatsResponse[] = [];
      for (const p of parts)
        stats.push(await onOwner(p, 'GetTopicStats', req, call, async (t) => localStats(t)));
      return parts.length === 1 ? stats[0]! : sumStats(stats);
    }),
    GetTopicInternalStats: u(async (req: AnyReq, call) => {
      const topic = parseTopicName(String(req.topic));
      return onOwner(
        topic,
        'GetTopicInternalStats',
        req,
        call,
        async (t): Promise<GetTopicInternalStatsResponse> => {
          const s = t.log.stats();
          return {
            ledgers: s.ledgers.map((l) => ({
              ledgerId: l.ledgerId,
              entries: l.entries,
              size: l.size,
              offloaded: l.offloaded,
            })),
            cursors: s.cursors.map((c) => ({
              name: c.name,
              markDeletePosition: formatPosition(c.markDelete),
              ackRanges: c.ackRanges,
              backlog: c.backlog,
            })),
          };
        },
      );
    }),
    UnloadTopic: u(async (req: AnyReq, call) => {
      for (const p of await expand(String(req.topic))) {
        const forwarded = isForwarded(call);
        const place = await d.topics.placement(p);
        const owner = await d.ownership.read(place.bundleKey);
        if (owner && owner.brokerId !== d.self.brokerId && !forwarded) {
          const md = new Metadata();
          md.set(FORWARDED_METADATA_KEY, d.self.brokerId);
          await d.clients.call(owner.address, 'UnloadTopic', { topic: p.full }, md);
        } else {
          await d.topics.unload(p);
        }
      }
      return {};
    }),
    OffloadTopic: u(async (req: AnyReq, call) => {
      let ledgersOffloaded = 0;
      for (const p of await expand(String(req.topic))) {
        const r = await onOwner(p, 'OffloadTopic', req, call, async (t) => ({
          ledgersOffloaded: await t.log.offloadNow(),
        }));
        ledgersOffloaded += Number(r.ledgersOffloaded);
      }
      return { ledgersOffloaded };
    }),
    GetTopicPolicies: u(async (req: { topic: string }) => {
      const topic = parseTopicName(req.topic);
      const rec = await d.resources.getTopic(topic);
      if (!rec) throw new NotFoundError(`topic '${topic.full}' does not exist`);
      return { policies: rec.policies ?? {} };
    }),
    SetTopicPolicies: u(async (req: { topic: string; policies: unknown }) => {
      await d.resources.setTopicPolicies(parseTopicName(req.topic), pickSetPolicies(req.policies));
      return {};
    }),
    CreateSubscription: u(async (req: AnyReq & { subscription: string; initialPosition: string }, call) => {
      checkSubscriptionName(req.subscription);
      const initial = req.initialPosition === 'INITIAL_POSITION_EARLIEST' ? 'earliest' : 'latest';
      for (const p of await expand(String(req.topic))) {
        await onOwner(p, 'CreateSubscription', req, call, async (t) => {
          await t.createSubscription(req.subscription, initial);
          return {};
        });
      }
      return {};
    }),
    DeleteSubscription: u(async (req: AnyReq & { subscription: string; force: boolean }, call) => {
      // Refuses internal cursors ('__dedup') too: deleting one would let the topic trim what the broker still needs.
      checkSubscriptionName(req.subscription);
      for (const p of await expand(String(req.topic))) {
        await onOwner(p, 'DeleteSubscription', req, call, async (t) => {
          await t.deleteSubscription(req.subscription, req.force);
          return {};
        });
      }
      return {};
    }),
    ListSubscriptions: u(async (req: AnyReq, call) => {
      const names = new Set<string>();
      for (const p of await expand(String(req.topic))) {
        const r = await onOwner(p, 'ListSubscriptions', req, call, async (t) => ({
          subscriptions: t.subscriptionNames(),
        }));
        for (const n of r.subscriptions) names.add(n);
      }
      return { subscriptions: [...names].sort() };
    }),
    ResetSubscription: u(async (req: ResetSubscriptionRequest__Output, call) => {
      checkSubscriptionName(req.subscription);
      const base = parseTopicName(req.topic);
      const idPartition = oneofCase(req, 'target') === 'messageId' ? (req.messageId?.partition ?? -1) : -1;
      const parts = idPartition >= 0 ? [partitionName(base, idPartition)] : await expand(req.topic);
      for (const p of parts) {
        await onOwner(p, 'ResetSubscription', req as unknown as AnyReq, call, async (t) => {
          if (!t.subscriptionNames().includes(req.subscription)) {
            throw new NotFoundError(`subscription '${req.subscription}' does not exist on topic '${p.full}'`);
          }
          const target = await resetTarget(t, req);
          const sub = t.subscriptions.get(req.subscription);
          if (sub) await sub.reset(target);
          else {
            const cursor = await t.log.openCursor(req.subscription);
            await cursor.reset(target);
          }
          return {};
        });
      }
      return {};
    }),
  };
}
