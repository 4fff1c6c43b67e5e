export {
  type EffectivePolicies,
  type Policies,
  SluiceAdmin,
  type TopicInternalStats,
  type TopicListing,
  type TopicStats,
} from './admin.js';
export { type BatchEntry, decodeBatch, encodeBatch } from './batch-codec.js';
export type { SendCallback } from './batch-outcome.js';
export { SluiceClient, type SluiceClientOptions } from './client.js';
export { COMPRESSION_TYPES, type CompressionType } from './compression.js';
export {
  Consumer,
  type ConsumerOptions,
  type InitialPosition,
  type SeekPosition,
  type SubscriptionType,
} from './consumer.js';
export {
  DEFAULT_MAX_RECONSUME_TIMES,
  type DeadLetterPolicy,
  deadLetterTopicFor,
  LETTER_PROPERTIES,
  retryTopicFor,
} from './dead-letter.js';
export type { Message } from './message.js';
export {
  type BatchingOptions,
  DEFAULT_BATCHING,
  Producer,
  type ProducerOptions,
  type SendOptions,
} from './producer.js';
export { Reader, type ReaderOptions } from './reader.js';
export { DEFAULT_NACK_BACKOFF, type RedeliveryBackoff, redeliveryDelay } from './redelivery-backoff.js';
export { PartitionRouter } from './routing.js';
export { DEFAULT_SERVICE_URL, parseServiceUrl } from './service-url.js';
export { fullTopicName, partitionTopicName } from './topic-name.js';
