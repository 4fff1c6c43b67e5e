import { type Counter, counter, type Histogram, histogram, Registry } from '@sluice/common';

export interface OffloadMetrics {
  /** label `result`: ok | error */
  offloads: Counter;
  offloadSeconds: Histogram;
  bytesWritten: Counter;
  bytesRead: Counter;
  cacheHits: Counter;
  cacheMisses: Counter;
  uploadParts: Counter;
}

export function offloadMetrics(registry: Registry = new Registry()): OffloadMetrics {
  return {
    offloads: counter(registry, 'sluice_offload_ledgers_total', 'Ledger offload attempts by result', [
      'result',
    ]),
    offloadSeconds: histogram(
      registry,
      'sluice_offload_duration_seconds',
      'Time to offload one ledger',
      [],
      [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300],
    ),
    bytesWritten: counter(registry, 'sluice_offload_written_bytes_total', 'Bytes written to the cold tier'),
    bytesRead: counter(registry, 'sluice_offload_read_bytes_total', 'Bytes fetched from the cold tier'),
    cacheHits: counter(
      registry,
      'sluice_offload_block_cache_hits_total',
      'Offloaded block reads served from cache',
    ),
    cacheMisses: counter(
      registry,
      'sluice_offload_block_cache_misses_total',
      'Offloaded block reads that fetched the block',
    ),
    uploadParts: counter(registry, 'sluice_offload_upload_parts_total', 'Multipart upload parts sent to S3'),
  };
}
