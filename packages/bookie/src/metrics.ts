import {
  type Counter,
  type CountingHistogram,
  counter,
  countingHistogram,
  Gauge,
  gauge,
  type Histogram,
  histogram,
  type Registry,
} from '@sluice/common';

/** The bookie's `sluice_bookie_*` metrics, registered on the registry it is given. */
export interface BookieMetrics {
  addsTotal: Counter;
  addBytesTotal: Counter;
  /** Observed per add: allocation-free. */
  addLatencySeconds: CountingHistogram;
  readsTotal: Counter;
  readBytesTotal: Counter;
  journalFsyncSeconds: Histogram;
  journalGroupBytes: Histogram;
  journalGroupRecords: Histogram;
  journalBytes: Counter;
  journalQueue: Gauge;
  journalFilesRecycled: Counter;
  entryLogBytes: Counter;
  entriesWrittenOnce: Counter;
  entryLogSyncSeconds: Histogram;
  directLogWriteSeconds: Histogram;
  writeCacheBytes: Gauge;
  checkpointSeconds: Histogram;
  diskUsage: Gauge;
  readOnly: Gauge;
  gcLedgersDeleted: Counter;
  compactedLogs: Counter;
  inFlightAdds: Gauge;
  addStreamsTotal: Counter;
}

export function createBookieMetrics(registry: Registry): BookieMetrics {
  const sizeBuckets = [1024, 4096, 16_384, 65_536, 262_144, 524_288, 1_048_576, 4_194_304, 16_777_216];
  const countBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];
  return {
    addsTotal: counter(registry, 'sluice_bookie_adds_total', 'Entries added, by outcome', ['status']),
    addBytesTotal: counter(registry, 'sluice_bookie_add_bytes_total', 'Payload bytes of acknowledged adds'),
    addStreamsTotal: counter(
      registry,
      'sluice_bookie_add_streams_total',
      'AddEntries streams opened, by transport (channel: the add channel; grpc)',
      ['transport'],
    ),
    addLatencySeconds: countingHistogram(
      registry,
      'sluice_bookie_add_latency_seconds',
      'Add latency (arrival to ack)',
    ),
    readsTotal: counter(registry, 'sluice_bookie_reads_total', 'Entries read, by outcome', ['status']),
    readBytesTotal: counter(registry, 'sluice_bookie_read_bytes_total', 'Payload bytes served by reads'),
    journalFsyncSeconds: histogram(
      registry,
      'sluice_bookie_journal_fsync_seconds',
      'Time to make a journal group durable: one O_DSYNC writev (write and flush)',
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
      // Set once per group (a gauge set allocates): not per add.
      'Records waiting for the next group commit, sampled as each group commit completes',
    ),
    journalFilesRecycled: counter(
      registry,
      'sluice_bookie_journal_files_recycled_total',
      'Journal files started by reusing a retired one (no allocation on fdatasync)',
    ),
    entryLogBytes: counter(registry, 'sluice_bookie_entry_log_bytes_total', 'Bytes written to entry logs'),
    entriesWrittenOnce: counter(
      registry,
      'sluice_bookie_entries_written_once_total',
      'Entries written once, straight to an entry log with a reference in the journal (entryLogDirectBytes)',
    ),
    entryLogSyncSeconds: histogram(
      registry,
      'sluice_bookie_entry_log_sync_seconds',
      'Time of an entry log fdatasync (background flusher: every entryLogSyncBytes; entries written once: one per group)',
    ),
    directLogWriteSeconds: histogram(
      registry,
      'sluice_bookie_direct_log_write_seconds',
      'Time of one write of a group of entries written once, before its fdatasync (a write that grows a file allocates its blocks)',
    ),
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

/** What the bookie's state gauges read when Prometheus scrapes. */
export interface BookieStateSource {
  /** A live metadata session. */
  sessionUp(): boolean;
  /** The registration key exists on that session. */
  registered(): boolean;
  /** Free and total bytes of the ledger disk. */
  disk(): { freeBytes: number; totalBytes: number };
  /** Deleted entry logs kept for reuse. */
  spareLogs(): { count: number; bytes: number };
  /** Deleted files whose space is still being freed (see `FileDeleter`). */
  deleting(): { files: number; bytes: number };
}

/** State gauges computed at scrape time: metadata session, registration, disk space. */
export function registerBookieStateGauges(registry: Registry, source: BookieStateSource): void {
  const scraped = (name: string, help: string, read: () => number): void => {
    if (registry.getSingleMetric(name)) registry.removeSingleMetric(name);
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  };
  scraped(
    'sluice_bookie_metadata_session_up',
    '1 while the bookie holds a live metadata session, else 0',
    () => (source.sessionUp() ? 1 : 0),
  );
  scraped(
    'sluice_bookie_registered',
    '1 while the bookie is registered (writable or read-only), else 0',
    () => (source.registered() ? 1 : 0),
  );
  scraped(
    'sluice_bookie_disk_free_bytes',
    'Free bytes on the ledger disk of the bookie',
    () => source.disk().freeBytes,
  );
  scraped(
    'sluice_bookie_disk_total_bytes',
    'Total bytes of the ledger disk of the bookie',
    () => source.disk().totalBytes,
  );
  scraped(
    'sluice_bookie_entry_log_spares',
    'Deleted entry logs kept for new entry logs to write over',
    () => source.spareLogs().count,
  );
  scraped(
    'sluice_bookie_entry_log_spare_bytes',
    'Bytes of the deleted entry logs kept for reuse',
    () => source.spareLogs().bytes,
  );
  scraped(
    'sluice_bookie_deleting_files',
    'Deleted journal files and entry logs whose space is still being freed',
    () => source.deleting().files,
  );
  scraped(
    'sluice_bookie_deleting_bytes',
    'Bytes of deleted files still to be freed',
    () => source.deleting().bytes,
  );
}
