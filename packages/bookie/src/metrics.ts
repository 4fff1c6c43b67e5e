import {
  type Counter,
  counter,
  type Gauge,
  gauge,
  type Histogram,
  histogram,
  type Registry,
} from '@sluice/common';

/** The bookie's `sluice_bookie_*` metrics, registered on the registry it is given. */
export interface BookieMetrics {
  addsTotal: Counter;
  addBytesTotal: Counter;
  addLatencySeconds: Histogram;
  readsTotal: Counter;
  readBytesTotal: Counter;
  journalFsyncSeconds: Histogram;
  journalGroupBytes: Histogram;
  journalGroupRecords: Histogram;
  journalBytes: Counter;
  journalQueue: Gauge;
  entryLogBytes: Counter;
  writeCacheBytes: Gauge;
  checkpointSeconds: Histogram;
  diskUsage: Gauge;
  readOnly: Gauge;
  gcLedgersDeleted: Counter;
  compactedLogs: Counter;
  inFlightAdds: Gauge;
}

export function createBookieMetrics(registry: Registry): BookieMetrics {
  const sizeBuckets = [1024, 4096, 16_384, 65_536, 262_144, 524_288, 1_048_576, 4_194_304, 16_777_216];
  const countBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];
  return {
    addsTotal: counter(registry, 'sluice_bookie_adds_total', 'Entries added, by outcome', ['status']),
    addBytesTotal: counter(registry, 'sluice_bookie_add_bytes_total', 'Payload bytes of acknowledged adds'),
    addLatencySeconds: histogram(
      registry,
      'sluice_bookie_add_latency_seconds',
      'Add latency (arrival to ack)',
    ),
    readsTotal: counter(registry, 'sluice_bookie_reads_total', 'Entries read, by outcome', ['status']),
    readBytesTotal: counter(registry, 'sluice_bookie_read_bytes_total', 'Payload bytes served by reads'),
    journalFsyncSeconds: histogram(
      registry,
      'sluice_bookie_journal_fsync_seconds',
      'Journal fdatasync latency',
    ),
    journalGroupBytes: histogram(
      registry,
      'sluice_bookie_journal_group_bytes',
      'Bytes per journal group commit',
      [],
      sizeBuckets,
    ),
    journalGroupRecords: histogram(
      registry,
      'sluice_bookie_journal_group_records',
      'Records per journal group commit',
      [],
      countBuckets,
    ),
    journalBytes: counter(registry, 'sluice_bookie_journal_bytes_total', 'Bytes written to the journal'),
    journalQueue: gauge(
      registry,
      'sluice_bookie_journal_queue_records',
      'Records waiting for the next group commit',
    ),
    entryLogBytes: counter(registry, 'sluice_bookie_entry_log_bytes_total', 'Bytes written to entry logs'),
    writeCacheBytes: gauge(registry, 'sluice_bookie_write_cache_bytes', 'Bytes held in the write cache'),
    checkpointSeconds: histogram(registry, 'sluice_bookie_checkpoint_seconds', 'Checkpoint duration'),
    diskUsage: gauge(registry, 'sluice_bookie_disk_usage_ratio', 'Used fraction of a bookie disk', ['dir']),
    readOnly: gauge(registry, 'sluice_bookie_read_only', '1 when the bookie refuses adds'),
    gcLedgersDeleted: counter(
      registry,
      'sluice_bookie_gc_ledgers_deleted_total',
      'Ledgers garbage-collected',
    ),
    compactedLogs: counter(registry, 'sluice_bookie_compacted_entry_logs_total', 'Entry logs compacted away'),
    inFlightAdds: gauge(registry, 'sluice_bookie_in_flight_adds', 'Adds received and not yet acknowledged'),
  };
}
