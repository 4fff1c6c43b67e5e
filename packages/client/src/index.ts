export {
  type EffectivePolicies,
  type Policies,
  SluiceAdmin,
  type TopicInternalStats,
  type TopicListing,
  type TopicStats,
} from './admin.js';
export { type BatchEntry, decodeBatch, encodeBatch } from './batch-codec.js';
export { SluiceClient, type SluiceClientOptions } from './client.js';
export type { CompressionType } from './compression.js';
export { Consumer, type ConsumerOptions, type InitialPosition, type SubscriptionType } from './consumer.js';
export type { Message } from './message.js';
export type { NackBackoff } from './partition-consumer.js';
export {
  type BatchingOptions,
  DEFAULT_BATCHING,
  Producer,
  type ProducerOptions,
  type SendOptions,
} from './producer.js';
export { Reader, type ReaderOptions } from './reader.js';
export { PartitionRouter } from './routing.js';
export { DEFAULT_SERVICE_URL, parseServiceUrl } from './service-url.js';
export { fullTopicName, partitionTopicName } from './topic-name.js';
