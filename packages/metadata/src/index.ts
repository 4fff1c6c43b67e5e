export * from './embedded/embedded-metadata-store.js';
export * from './etcd/etcd-metadata-store.js';
export * from './leader-election.js';
export { CompactedError, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_TXN_OPS } from './limits.js';
export type * from './metadata-store.js';
export * from './open-metadata-store.js';
