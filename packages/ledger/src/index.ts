export * from './add-channel-connection.js';
export * from './add-stream.js';
export type * from './api.js';
export * from './auditor.js';
export * from './bookie-client.js';
export * from './bookie-directory.js';
export * from './bookkeeper-client.js';
export * from './entry-fetcher.js';
export * from './grpc-bookie-client.js';
export * from './ledger-id-allocator.js';
export * from './ledger-metadata-store.js';
export * from './ledger-reader.js';
export * from './ledger-recovery.js';
export * from './ledger-writer.js';
export * from './memory-bookie.js';
export * from './placement-policy.js';
/** In-process cluster (memory bookies + embedded metadata in a temp dir) for other packages' unit tests. */
export { MemoryCluster } from './testing/memory-cluster.js';
