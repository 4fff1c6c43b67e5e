import type { Logger } from '@sluice/common';
import { UnavailableError } from '@sluice/common';
import type {
  GetTopicMetadataRequest__Output,
  GetTopicMetadataResponse,
  LookupRequest__Output,
  LookupResponse,
} from '@sluice/proto';
import { BrokerRegistry } from './broker-registry.js';
import type { ClusterResources } from './cluster-resources.js';
import { unary } from './grpc-util.js';
import type { Ownership, SelfIdentity } from './ownership.js';
import type { TopicManager } from './topic-manager.js';
import { parseTopicName } from './topic-name.js';

export interface LookupDeps {
  topics: TopicManager;
  ownership: Ownership;
  registry: BrokerRegistry;
  resources: ClusterResources;
  self: SelfIdentity;
  logger: Logger;
}

/**
 * Lookup answers the owner; with no owner it names the least-loaded live
 * broker without writing anything. That broker acquires the bundle on first
 * use (a create-only ephemeral put), so concurrent lookups that pick different
 * brokers still end with exactly one owner; the others redirect.
 */
export async function lookupTopic(
  d: LookupDeps,
  topicText: string,
): Promise<{ brokerAddress: string; brokerHttpAddress: string }> {
  const topic = parseTopicName(topicText);
  if (d.topics.isClosing) {
    // Its ownership keys outlive the topics it is closing: an answer naming this broker would send clients back here.
    throw new UnavailableError('this broker is shutting down; look the topic up on another broker', {
      details: { owner: '' },
    });
  }
  const place = await d.topics.placement(topic);
  const owner = await d.ownership.read(place.bundleKey);
  if (owner) return { brokerAddress: owner.address, brokerHttpAddress: owner.httpAddress };
  const pick = BrokerRegistry.leastLoaded(await d.registry.live());
  if (!pick) throw new UnavailableError('no live broker is registered; start a broker and retry');
  if (pick.brokerId === d.self.brokerId) {
    await d.ownership.ensureOwned(place.bundleKey).catch(() => undefined);
    const now = await d.ownership.read(place.bundleKey);
    if (now) return { brokerAddress: now.address, brokerHttpAddress: now.httpAddress };
  }
  return { brokerAddress: pick.address, brokerHttpAddress: pick.httpAddress };
}

export function createLookupService(d: LookupDeps) {
  return {
    Lookup: unary<LookupRequest__Output, LookupResponse>(d.logger, (req) => lookupTopic(d, req.topic)),
    GetTopicMetadata: unary<GetTopicMetadataRequest__Output, GetTopicMetadataResponse>(
      d.logger,
      async (req) => {
        const topic = parseTopicName(req.topic);
        await d.resources.namespacePolicies(topic.namespaceName);
        // Plain topics are created on first use: an unknown one is simply not partitioned (yet).
        const rec = await d.resources.getTopic(topic);
        return { partitions: rec?.partitions ?? 0 };
      },
    ),
  };
}
