import { fromGrpcError, isRetriable, type MessageId, retry } from '@sluice/common';
import type {
  AdminServiceClient,
  GetNamespacePoliciesResponse__Output,
  GetTopicInternalStatsResponse__Output,
  GetTopicPoliciesResponse__Output,
  GetTopicStatsResponse__Output,
  ListNamespacesResponse__Output,
  ListSubscriptionsResponse__Output,
  ListTenantsResponse__Output,
  ListTopicsResponse__Output,
  OffloadTopicResponse__Output,
  Policies,
  Policies__Output,
  SetNamespacePoliciesResponse__Output,
  TopicListing__Output,
} from '@sluice/proto';
import type { ConnectionPool } from './connection-pool.js';
import type { InitialPosition } from './consumer.js';
import { toWireId } from './message.js';
import { ownerHint } from './reconnect-policy.js';
import { unary } from './unary.js';

export type { Policies, Policies__Output as EffectivePolicies } from '@sluice/proto';
export type TopicStats = GetTopicStatsResponse__Output;
export type TopicInternalStats = GetTopicInternalStatsResponse__Output;
export type TopicListing = TopicListing__Output;

type AdminMethod = {
  [K in keyof AdminServiceClient]: K extends `${Uppercase<string>}${string}` ? K : never;
}[keyof AdminServiceClient];

/** Redirect hops an admin call follows before giving up (ownership moving in a loop). */
const MAX_REDIRECTS = 3;

/**
 * Which failures an admin call is retried after. Reads are retried after any
 * transient failure. A mutation (create, delete, set, update, unload,
 * offload, reset) only when the broker cannot have applied it: it could not
 * be reached (UNAVAILABLE) or it does not own the topic (NOT_OWNER). After a
 * deadline or a lost session it may have been applied, and a retry would
 * then report AlreadyExists / NotFound for a change that succeeded, or
 * repeat one that is not idempotent; the caller sees the TimeoutError.
 */
export function adminRetryPolicy(method: string): (err: unknown) => boolean {
  if (method.startsWith('Get') || method.startsWith('List')) return isRetriable;
  return (err) => {
    const code = fromGrpcError(err).code;
    return code === 'UNAVAILABLE' || code === 'NOT_OWNER';
  };
}

/**
 * AdminService over gRPC: tenants, namespaces, topics, subscriptions and
 * policies. Calls go to the service URL's broker and follow a
 * FAILED_PRECONDITION + "sluice-owner" redirect for topic-level calls.
 */
export class SluiceAdmin {
  constructor(
    private readonly pool: ConnectionPool,
    private readonly serviceAddress: string,
    private readonly timeoutMs: number,
  ) {}

  async createTenant(tenant: string, opts: { ifNotExists?: boolean } = {}): Promise<void> {
    await this.invoke('CreateTenant', { tenant, ifNotExists: opts.ifNotExists ?? false });
  }

  async deleteTenant(tenant: string): Promise<void> {
    await this.invoke('DeleteTenant', { tenant });
  }

  async listTenants(): Promise<string[]> {
    return (await this.invoke<ListTenantsResponse__Output>('ListTenants', {})).tenants;
  }

  async createNamespace(
    namespace: string,
    opts: { ifNotExists?: boolean; policies?: Policies } = {},
  ): Promise<void> {
    await this.invoke('CreateNamespace', {
      namespace,
      ifNotExists: opts.ifNotExists ?? false,
      policies: opts.policies ?? null,
    });
  }

  async deleteNamespace(namespace: string): Promise<void> {
    await this.invoke('DeleteNamespace', { namespace });
  }

  async listNamespaces(tenant: string): Promise<string[]> {
    return (await this.invoke<ListNamespacesResponse__Output>('ListNamespaces', { tenant })).namespaces;
  }

  async getNamespacePolicies(namespace: string): Promise<Policies__Output> {
    const res = await this.invoke<GetNamespacePoliciesResponse__Output>('GetNamespacePolicies', {
      namespace,
    });
    return res.policies ?? {};
  }

  /** Change the given policy fields; returns the namespace's resulting policies. */
  async setNamespacePolicies(namespace: string, policies: Policies): Promise<Policies__Output> {
    const res = await this.invoke<SetNamespacePoliciesResponse__Output>('SetNamespacePolicies', {
      namespace,
      policies,
    });
    return res.policies ?? {};
  }

  async createTopic(topic: string, opts: { partitions?: number; ifNotExists?: boolean } = {}): Promise<void> {
    await this.invoke('CreateTopic', {
      topic,
      partitions: opts.partitions ?? 0,
      ifNotExists: opts.ifNotExists ?? false,
    });
  }

  async deleteTopic(topic: string, opts: { force?: boolean } = {}): Promise<void> {
    await this.invoke('DeleteTopic', { topic, force: opts.force ?? false });
  }

  async listTopics(namespace: string): Promise<TopicListing[]> {
    return (await this.invoke<ListTopicsResponse__Output>('ListTopics', { namespace })).topics;
  }

  async updatePartitions(topic: string, partitions: number): Promise<void> {
    await this.invoke('UpdatePartitions', { topic, partitions });
  }

  async topicStats(topic: string): Promise<TopicStats> {
    return this.invoke<TopicStats>('GetTopicStats', { topic });
  }

  async topicInternalStats(topic: string): Promise<TopicInternalStats> {
    return this.invoke<TopicInternalStats>('GetTopicInternalStats', { topic });
  }

  async unloadTopic(topic: string): Promise<void> {
    await this.invoke('UnloadTopic', { topic });
  }

  /** Offload every closed ledger now; returns how many were offloaded. */
  async offloadTopic(topic: string): Promise<number> {
    return (await this.invoke<OffloadTopicResponse__Output>('OffloadTopic', { topic })).ledgersOffloaded;
  }

  async getTopicPolicies(topic: string): Promise<Policies__Output> {
    return (
      (await this.invoke<GetTopicPoliciesResponse__Output>('GetTopicPolicies', { topic })).policies ?? {}
    );
  }

  async setTopicPolicies(topic: string, policies: Policies): Promise<void> {
    await this.invoke('SetTopicPolicies', { topic, policies });
  }

  async createSubscription(
    topic: string,
    subscription: string,
    opts: { initialPosition?: InitialPosition } = {},
  ): Promise<void> {
    await this.invoke('CreateSubscription', {
      topic,
      subscription,
      initialPosition:
        opts.initialPosition === 'earliest' ? 'INITIAL_POSITION_EARLIEST' : 'INITIAL_POSITION_LATEST',
    });
  }

  async deleteSubscription(
    topic: string,
    subscription: string,
    opts: { force?: boolean } = {},
  ): Promise<void> {
    await this.invoke('DeleteSubscription', { topic, subscription, force: opts.force ?? false });
  }

  async listSubscriptions(topic: string): Promise<string[]> {
    return (await this.invoke<ListSubscriptionsResponse__Output>('ListSubscriptions', { topic }))
      .subscriptions;
  }

  /** Move a subscription to a message id or to the first message published at or after a time. */
  async resetSubscription(
    topic: string,
    subscription: string,
    target: { messageId: MessageId } | { publishTime: number },
  ): Promise<void> {
    await this.invoke(
      'ResetSubscription',
      'messageId' in target
        ? { topic, subscription, messageId: toWireId(target.messageId) }
        : { topic, subscription, publishTime: target.publishTime },
    );
  }

  private async invoke<Res = unknown>(method: AdminMethod, request: object): Promise<Res> {
    return retry(
      async () => {
        let address = this.serviceAddress;
        for (let hop = 0; ; hop++) {
          const stub = this.pool.get(address).admin;
          try {
            return await unary<object, Res>(stub, stub[method] as never, request, this.timeoutMs);
          } catch (err) {
            const e = fromGrpcError(err);
            const owner = ownerHint(e);
            if (owner === undefined || hop >= MAX_REDIRECTS) throw e;
            address = owner;
          }
        }
      },
      { retries: 3, maxDelayMs: 1000, shouldRetry: adminRetryPolicy(method) },
    );
  }
}
