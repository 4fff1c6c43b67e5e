import { type Counter, counter, type Histogram, histogram, type Registry } from '@sluice/common';

export interface LogMetrics {
  appends: Counter;
  appendBytes: Counter;
  appendLatency: Histogram;
  rollovers: Counter;
  trimmedLedgers: Counter;
  offloadedLedgers: Counter;
  offloadFailures: Counter;
  cursorFlushes: Counter;
  cacheHits: Counter;
  cacheMisses: Counter;
}

export function logMetrics(registry: Registry): LogMetrics {
  return {
    appends: counter(registry, 'sluice_managed_log_appends_total', 'Entries appended to managed logs'),
    appendBytes: counter(registry, 'sluice_managed_log_append_bytes_total', 'Payload bytes appended'),
    appendLatency: histogram(
      registry,
      'sluice_managed_log_append_latency_seconds',
      'Time from append to durable (Qa) acknowledgement',
    ),
    rollovers: counter(registry, 'sluice_managed_log_rollovers_total', 'Ledger rollovers', ['reason']),
    trimmedLedgers: counter(registry, 'sluice_managed_log_trimmed_ledgers_total', 'Ledgers trimmed'),
    offloadedLedgers: counter(registry, 'sluice_managed_log_offloaded_ledgers_total', 'Ledgers offloaded'),
    offloadFailures: counter(
      registry,
      'sluice_managed_log_offload_failures_total',
      'Failed offload attempts',
    ),
    cursorFlushes: counter(
      registry,
      'sluice_managed_log_cursor_flushes_total',
      'Cursor state records written',
    ),
    cacheHits: counter(registry, 'sluice_managed_log_cache_hits_total', 'Entries served from memory'),
    cacheMisses: counter(registry, 'sluice_managed_log_cache_misses_total', 'Entries read from storage'),
  };
}
