export { Broker, type BrokerOptions } from './broker.js';
export { type BrokerConfig, brokerConfigSchema, metadataUrlFor } from './broker-config.js';
export { type BrokerRecord, BrokerRegistry } from './broker-registry.js';
export { bundleOf, bundleRanges } from './bundles.js';
export { ClusterResources } from './cluster-resources.js';
export { decodeEnvelope, type Envelope, encodeEnvelope } from './entry-envelope.js';
export {
  DEFAULT_MAX_MESSAGE_SIZE,
  type EffectivePolicies,
  type PersistencePolicy,
  type PolicyValues,
} from './policies.js';
export { BrokerRuntime, type BrokerRuntimeOptions } from './runtime.js';
export type { LogProvider } from './topic-manager.js';
export { parseNamespaceName, parseTopicName, type TopicName } from './topic-name.js';
