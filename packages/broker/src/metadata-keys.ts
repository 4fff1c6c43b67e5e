/** Metadata keys of the broker (DESIGN §3), relative to the cluster prefix. */
export const tenantKey = (t: string): string => `tenants/${t}`;
export const TENANTS_PREFIX = 'tenants/';
export const namespaceKey = (ns: string): string => `namespaces/${ns}`;
export const namespacesPrefix = (t: string): string => `namespaces/${t}/`;
export const topicKey = (path: string): string => `topics/${path}`;
export const topicsPrefix = (ns: string): string => `topics/${ns}/`;
export const brokerKey = (id: string): string => `brokers/${id}`;
export const BROKERS_PREFIX = 'brokers/';
export const ownershipKey = (ns: string, bundle: string): string => `ownership/${ns}/${bundle}`;
export const ownershipPrefix = (ns: string): string => `ownership/${ns}/`;
export const BOOKIES_AVAILABLE_PREFIX = 'bookies/available/';
/** Deduplication snapshot of a topic: producer name → highest stored sequence id, at a log position. */
export const dedupKey = (path: string): string => `dedup/${path}`;
export const NAMESPACES_PREFIX = 'namespaces/';
export const TOPICS_PREFIX = 'topics/';
