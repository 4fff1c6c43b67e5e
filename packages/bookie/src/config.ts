import { InvalidArgumentError, z, zDuration, zSize } from '@sluice/common';
import { JOURNAL_MAX_PAYLOAD_BYTES } from './journal-record.js';
import { INDEX_SPREAD_RECORDS } from './ledger-storage.js';

/**
 * Settings of a bookie. Every setting has a default and a one-line doc; the
 * ones that trade safety for speed say so.
 */
export const bookieConfigSchema = z.object({
  /** Metadata store URL: `etcd://host:port/prefix` or `embedded:///dir`. */
  metadata: z
    .string({
      error:
        'a metadata URL is required (--metadata or SLUICE_BOOKIE_METADATA), e.g. etcd://127.0.0.1:2379/sluice/main',
    })
    .min(1, 'a metadata URL is required, e.g. etcd://127.0.0.1:2379/sluice/main'),
  /** Data dir; holds the bookie's identity and, unless overridden, its journal and ledger dirs. */
  dataDir: z
    .string({ error: 'a data dir is required (--data-dir or SLUICE_BOOKIE_DATA_DIR)' })
    .min(1, 'a data dir is required (--data-dir)'),
  /** Journal (WAL) dir; put it on its own disk for the lowest add latency. Default: <dataDir>/journal. */
  journalDir: z.string().optional(),
  /** Entry log and index dir. Default: <dataDir>/ledgers. */
  ledgerDir: z.string().optional(),
  /** gRPC port (BookieService and grpc.health.v1). 0 picks a free port. */
  port: z.coerce.number().int().min(0).max(65535).default(3181),
  /**
   * Port of the add channel: AddEntries streams on plain TCP (the same
   * messages as the gRPC call), which the bookie reads into memory it reuses
   * instead of fresh buffers per read and per message. Ledger clients use it
   * when the registration advertises it, gRPC otherwise. Default 3182, or a
   * free port when `port` is 0; -1 disables it.
   */
  addPort: z.coerce.number().int().min(-1).max(65535).optional(),
  /** HTTP port for /metrics, /healthz, /readyz. 0 picks a free port; -1 disables it. */
  httpPort: z.coerce.number().int().min(-1).max(65535).default(8000),
  /** Address to bind the gRPC and HTTP servers to. */
  bindHost: z.string().default('0.0.0.0'),
  /** host:port that clients use to reach this bookie. Default: <hostname>:<port>. */
  advertiseAddress: z.string().optional(),
  /** Rack (failure domain) reported in the registration, used by placement policies. */
  rack: z.string().default('default'),
  /** Journal group commit: write + fdatasync once this many bytes are pending. */
  journalGroupBytes: zSize.default(512 * 1024),
  /**
   * Journal group commit: how long an idle journal waits for more adds to
   * share its fdatasync. 0 writes at the end of the current event-loop turn;
   * adds that arrive while `journalMaxWritesInFlight` writes are in flight
   * still share the next one, so a busy bookie groups anyway and the fsync
   * rate stays bounded by the disk.
   * A positive value adds that wait (≥ 1 ms, more under CPU load) to adds on
   * an idle journal, in exchange for fewer fsyncs when many lone adds arrive
   * in separate turns on a slow (e.g. spinning) disk.
   */
  journalGroupWaitMs: zDuration.default(0),
  /**
   * Zero-fill a fresh journal file this far past a small group's records
   * (recycled files already are), so that group fdatasyncs overwrite
   * allocated blocks and need no file-system journal commit. Off by default:
   * on the virtio disk it was measured on it bought no add latency and cost
   * ~25% more device writes at low rates. 0 turns it off.
   */
  journalPreallocBytes: zSize.default(0),
  /**
   * Journal group writes in flight at once. With 2 (the default), adds that
   * arrive while a group is being flushed get their own write at once
   * instead of waiting for that flush to finish first: the flushes overlap
   * on the device, so an add waits about one flush, not up to two. Groups
   * are still acknowledged in order. 1 writes one group at a time.
   */
  journalMaxWritesInFlight: z.coerce.number().int().min(1).max(8).default(2),
  /** A journal file rolls to a new one after this many bytes. */
  journalFileBytes: zSize.default(256 * 1024 * 1024),
  /**
   * fdatasync the journal before acknowledging adds. Turning this off CAN LOSE
   * ACKNOWLEDGED DATA on a power loss or kernel crash; only for throwaway tests.
   */
  journalSync: z
    .union([z.boolean(), z.enum(['true', 'false'])])
    .transform((v) => v === true || v === 'true')
    .default(true),
  /** An entry log file holds at most this many bytes (one larger entry gets a file of its own); a full one is rolled at once. */
  entryLogFileBytes: zSize.default(1024 * 1024 * 1024),
  /**
   * Entry logs that compaction or garbage collection deletes are kept, up to
   * this many bytes, for new entry logs of large entries (those written
   * once) to write over instead of growing a fresh file: an fdatasync of
   * blocks a file already holds needs no file-system journal commit, which
   * measured ~2 ms off a paced add's p99 on a virtio disk. The space comes
   * back to the disk once usage passes `diskUsageLwmThreshold`. 0 deletes
   * them outright.
   */
  entryLogSpareBytes: zSize.default(4 * 1024 * 1024 * 1024),
  /**
   * Deleted journal files and entry logs (those not kept as spares) are
   * freed at most this many bytes a second: renamed `<name>.deleting`, cut
   * from the end in 4 MiB steps, then unlinked. Unlinking a 3 GiB file at
   * once stalled a writer's fdatasyncs on the same disk for ~0.5 s here
   * (ext4 with online discard); freed at 256 MiB/s their p99 stayed at
   * 1.5–1.9 ms. While a disk is over `diskUsageLwmThreshold` the watchdog
   * frees everything queued at once. 0 unlinks at once.
   */
  fileDeleteRate: zSize.default(256 * 1024 * 1024),
  /**
   * The background flusher fdatasyncs the entry log after this many appended
   * bytes. Small values keep journal fdatasyncs on the same disk from queueing
   * behind a large entry-log writeback: measured here, p99 add latency at half
   * the maximum rate fell from 8–27 ms to 4.2–7.2 ms for 16 KiB and 128 KiB
   * entries going from 8 MiB to 256 KiB. Small syncs cost throughput when
   * the disk is the limit (a standalone at its maximum rate lost ~10%), so
   * while the flusher is behind (over 4 MiB unflushed) it syncs every 8 MiB
   * instead. With the journal on its own disk, large values cost no latency.
   */
  entryLogSyncBytes: zSize.default(256 * 1024),
  /**
   * Entries of at least this many payload bytes are written once: straight
   * to an entry log of their own, fdatasynced with their group, with only a
   * small reference record in the journal (the two writes run side by side;
   * the add is acknowledged when both are durable). Where journal and entry
   * logs share a disk, each such entry costs it half the bytes, at the cost
   * of an fdatasync per group on a growing file (a file-system journal
   * commit each) instead of page-cache writes. Entries written once are read
   * from the entry log (the OS page cache), not the write cache. Measured on
   * one shared disk (three interleaved pairs each): three bookies behind one
   * broker produced 72.9k / 81.2k / 83.4k msg/s against 60.5k / 65.5k /
   * 58.9k writing twice (3.07 bytes written per payload byte instead of
   * 7.1), and a standalone 164k / 176k / 190k against 131k / 151k / 158k
   * when writing once waited for a journal backlog. Small entries (a
   * lightly loaded producer's batches) stay on the journal path. 0 writes
   * every entry twice: with the journal on its own disk, that keeps the
   * ledger disk's fdatasyncs out of the add's path.
   */
  entryLogDirectBytes: zSize.default(16 * 1024),
  /**
   * Large entries are written once only while at least this many journal
   * bytes wait behind the group being written, i.e. while the journal does
   * not keep up; 0 (the default) writes them once always.
   */
  entryLogDirectBacklogBytes: zSize.default(0),
  /**
   * Write the entries that are written once (`entryLogDirectBytes`) with
   * O_DIRECT, bypassing the page cache, where the file system takes it
   * (tmpfs does not; the bookie then logs a warning and writes through the
   * page cache). Each group is copied into page-aligned memory and written
   * in whole 4 KiB blocks. Measured on this 2-core VM: 0.55–1.2 s of CPU
   * per GB written through the page cache against ~0.1 s with O_DIRECT.
   * Entries read back later come from the disk, not the page cache.
   */
  entryLogDirectIo: z
    .union([z.boolean(), z.enum(['true', 'false'])])
    .transform((v) => v === true || v === 'true')
    .default(true),
  /** Checkpoint (flush entry logs + index, then trim the journal) at least this often. */
  checkpointIntervalMs: zDuration.default(10_000),
  /**
   * A ledger with this many index records waiting has them appended and
   * fdatasynced between checkpoints (after an entry log sync), so that a
   * busy ledger's index reaches the disk in slices rather than all at the
   * checkpoint, where one fdatasync of megabytes held up the journal's.
   */
  indexSpreadRecords: z.coerce.number().int().min(1).default(INDEX_SPREAD_RECORDS),
  /** Checkpoint early when the write cache holds this many bytes; adds wait when it holds twice this. */
  writeCacheBytes: zSize.default(64 * 1024 * 1024),
  /**
   * Largest payload accepted in one entry. Lowering it later is safe: the
   * journal replays records written under a larger value.
   */
  maxEntryBytes: zSize
    .refine((v) => v <= JOURNAL_MAX_PAYLOAD_BYTES, {
      message: `must be at most ${JOURNAL_MAX_PAYLOAD_BYTES} bytes, the largest journal record`,
    })
    .default(5 * 1024 * 1024 + 64 * 1024),
  /** Turn read-only when disk usage of the journal or ledger disk exceeds this fraction. */
  diskUsageThreshold: z.coerce.number().gt(0).lte(1).default(0.95),
  /** Turn writable again once disk usage is below this fraction. */
  diskUsageLwmThreshold: z.coerce.number().gt(0).lte(1).default(0.9),
  /** How often the disk watchdog checks usage. */
  diskCheckIntervalMs: zDuration.default(10_000),
  /**
   * The free space in the registration is re-published (one metadata write)
   * at most this often, checked at each disk check, and only after it moved
   * by 1% of the disk or more; never per add.
   */
  capacityRefreshMs: zDuration.default(30_000),
  /** How often deleted ledgers are garbage-collected and entry logs compacted. */
  gcIntervalMs: zDuration.default(5 * 60_000),
  /** A local ledger is collected only when absent from metadata and first seen longer ago than this. */
  gcGracePeriodMs: zDuration.default(10 * 60_000),
  /** Entry logs whose live fraction is below this are compacted (0 disables compaction). */
  compactionThreshold: z.coerce.number().min(0).max(1).default(0.5),
  /**
   * Compaction copies at most this many bytes a second, in 1 MiB steps with
   * adds going on between them. Unpaced, compacting a half-dead 1 GiB log
   * that had just been rolled away (its other half written after its
   * ledger was deleted) copied ~0.5 GiB at once, and paced 16 KiB adds at
   * ~570 MB/s took 40–260 ms at the median for 1.5–2.5 s
   * (test/perf/bookie-bench.ts). 0 copies as fast as the disk goes.
   */
  compactionRate: zSize.default(64 * 1024 * 1024),
  /** TTL of the metadata session that holds the bookie's registration. */
  sessionTtlMs: zDuration.default(10_000),
  /** Per-stream cap on bytes of adds received but not yet acknowledged; the stream is paused above it. */
  maxInFlightBytesPerStream: zSize.default(32 * 1024 * 1024),
  /**
   * Per-stream cap on adds received but not yet acknowledged, whatever their
   * size (adds with tiny or empty payloads stay under the byte cap); the
   * stream is paused above it. Well above what a ledger client keeps in
   * flight (4096).
   */
  maxInFlightAddsPerStream: z.coerce.number().int().min(1).default(32_768),
});

/** Bookie settings as given (defaults applied by `resolveBookieConfig`). */
export type BookieConfigInput = z.input<typeof bookieConfigSchema>;
/** Bookie settings with every default applied. */
export type BookieConfig = z.infer<typeof bookieConfigSchema>;

/** The add channel's port when `addPort` is not set. */
export const DEFAULT_ADD_PORT = 3182;

/** The port the add channel listens on (0: a free one), or -1 when it is off. */
export function addPortOf(cfg: BookieConfig): number {
  return cfg.addPort ?? (cfg.port === 0 ? 0 : DEFAULT_ADD_PORT);
}

export function resolveBookieConfig(input: BookieConfigInput): BookieConfig {
  const result = bookieConfigSchema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new InvalidArgumentError(`invalid bookie setting '${issue.path.join('.')}': ${issue.message}`);
  }
  const cfg = result.data;
  if (cfg.diskUsageLwmThreshold > cfg.diskUsageThreshold) {
    throw new InvalidArgumentError(
      `invalid bookie setting 'diskUsageLwmThreshold': ${cfg.diskUsageLwmThreshold} is above diskUsageThreshold ${cfg.diskUsageThreshold}`,
    );
  }
  return cfg;
}
