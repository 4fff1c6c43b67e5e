/**
 * The ledger client: creates ledgers on a placement-chosen ensemble, opens
 * them for reading (optionally recovering them first), deletes them.
 */
import {
  counter,
  countingHistogram,
  type LedgerId,
  type Logger,
  type Registry,
  silentLogger,
  UnavailableError,
} from '@sluice/common';
import type { MetadataStore } from '@sluice/metadata';
import type {
  CreateLedgerOptions,
  LedgerClient,
  LedgerMetadata,
  LedgerReader,
  LedgerWriter,
  OpenLedgerOptions,
} from './api.js';
import type { BookieClientPool } from './bookie-client.js';
import { type BookieDirectory, MetadataBookieDirectory } from './bookie-directory.js';
import { EntryFetcher, type EntryFetcherOptions } from './entry-fetcher.js';
import { type GrpcBookieClientOptions, GrpcBookieClientPool } from './grpc-bookie-client.js';
import { LedgerIdAllocator } from './ledger-id-allocator.js';
import { LedgerMetadataStore, validateQuorums } from './ledger-metadata-store.js';
import { ReplicatedLedgerReader } from './ledger-reader.js';
import { LedgerRecovery, type RecoveryOptions } from './ledger-recovery.js';
import { type LedgerWriterOptions, MAX_ENTRY_BYTES, ReplicatedLedgerWriter } from './ledger-writer.js';
import { type PlacementPolicy, RackAwarePlacementPolicy } from './placement-policy.js';

export interface LedgerClientOptions
  extends LedgerWriterOptions,
    EntryFetcherOptions,
    RecoveryOptions,
    GrpcBookieClientOptions {
  metadata: MetadataStore;
  /** Where bookies are; default: their registrations in `metadata`. */
  directory?: BookieDirectory;
  /** How to reach bookies; default: gRPC to the directory's addresses. */
  pool?: BookieClientPool;
  placement?: PlacementPolicy;
  /** Ids reserved per metadata transaction. */
  idBlockSize?: number;
  logger?: Logger;
  registry?: Registry;
}

export class BookKeeperClient implements LedgerClient {
  private readonly ledgers: LedgerMetadataStore;
  private readonly directory: BookieDirectory;
  private readonly pool: BookieClientPool;
  private readonly ownsPool: boolean;
  private readonly placement: PlacementPolicy;
  private readonly ids: LedgerIdAllocator;
  private readonly fetcher: EntryFetcher;
  private readonly logger: Logger;
  private readonly ensembleChanges?: () => void;
  private readonly operation?: (op: 'create' | 'open' | 'recover' | 'delete') => void;
  private readonly addAcknowledged?: (seconds: number, bytes: number) => void;
  private closed = false;

  constructor(private readonly opts: LedgerClientOptions) {
    this.ledgers = new LedgerMetadataStore(opts.metadata);
    this.directory = opts.directory ?? new MetadataBookieDirectory(opts.metadata);
    this.ownsPool = !opts.pool;
    this.pool = opts.pool ?? new GrpcBookieClientPool(this.directory, opts);
    this.placement = opts.placement ?? new RackAwarePlacementPolicy();
    this.ids = new LedgerIdAllocator(opts.metadata, opts.idBlockSize);
    this.logger = opts.logger ?? silentLogger;
    this.fetcher = new EntryFetcher(this.pool, this.logger, opts);
    if (opts.registry) {
      const c = counter(
        opts.registry,
        'sluice_ledger_ensemble_changes_total',
        'Ledger ensemble changes after bookie failures',
      );
      this.ensembleChanges = () => c.inc();
      const ops = counter(
        opts.registry,
        'sluice_ledger_operations_total',
        'Ledger metadata operations completed, by operation',
        ['operation'],
      );
      this.operation = (op) => ops.inc({ operation: op });
      // Observed per entry: allocation-free.
      const latency = countingHistogram(
        opts.registry,
        'sluice_ledger_add_latency_seconds',
        'Time from addEntry until Qa bookies fsynced the entry and every lower one',
      );
      const bytes = counter(
        opts.registry,
        'sluice_ledger_add_bytes_total',
        'Payload bytes acknowledged by ledger writers',
      );
      this.addAcknowledged = (s, n) => {
        latency.observe(s);
        bytes.inc(n);
      };
    }
  }

  get maxEntryBytes(): number {
    return this.opts.maxEntryBytes ?? MAX_ENTRY_BYTES;
  }

  async createLedger(o: CreateLedgerOptions): Promise<LedgerWriter> {
    this.checkOpen();
    validateQuorums(o.ensembleSize, o.writeQuorum, o.ackQuorum);
    await this.refreshPool();
    const bookies = this.placement.newEnsemble(o.ensembleSize, await this.directory.list());
    const ledgerId = await this.ids.nextId(o.idAbove ?? 0);
    const metadata: LedgerMetadata = {
      ledgerId,
      ensembleSize: o.ensembleSize,
      writeQuorum: o.writeQuorum,
      ackQuorum: o.ackQuorum,
      state: 'OPEN',
      lastEntryId: -1,
      length: 0,
      segments: [{ firstEntryId: 0, bookies }],
      ctime: Date.now(),
      custom: { ...(o.custom ?? {}) },
    };
    const vm = await this.ledgers.create(metadata);
    this.operation?.('create');
    const writer = new ReplicatedLedgerWriter(
      {
        metadata: this.ledgers,
        pool: this.pool,
        directory: this.directory,
        placement: this.placement,
        logger: this.logger.child({ ledgerId }),
        ...(this.ensembleChanges ? { onEnsembleChange: this.ensembleChanges } : {}),
        ...(this.addAcknowledged ? { onAddAcknowledged: this.addAcknowledged } : {}),
      },
      vm,
      this.opts,
    );
    return writer;
  }

  async openLedger(ledgerId: LedgerId, o: OpenLedgerOptions = {}): Promise<LedgerReader> {
    this.checkOpen();
    await this.refreshPool();
    const vm = o.recover
      ? await new LedgerRecovery(
          {
            metadata: this.ledgers,
            pool: this.pool,
            fetcher: this.fetcher,
            logger: this.logger,
            directory: this.directory,
            placement: this.placement,
          },
          ledgerId,
          this.opts,
        ).run()
      : await this.ledgers.readOrThrow(ledgerId);
    const reader = new ReplicatedLedgerReader(
      { metadata: this.ledgers, pool: this.pool, fetcher: this.fetcher },
      vm,
    );
    if (!o.recover && vm.metadata.state !== 'CLOSED') await reader.refreshLac();
    this.operation?.(o.recover ? 'recover' : 'open');
    return reader;
  }

  async deleteLedger(ledgerId: LedgerId): Promise<void> {
    this.checkOpen();
    await this.ledgers.delete(ledgerId);
    this.operation?.('delete');
  }

  async getLedgerMetadata(ledgerId: LedgerId): Promise<LedgerMetadata | undefined> {
    return (await this.ledgers.read(ledgerId))?.metadata;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.ownsPool) await this.pool.close();
  }

  private async refreshPool(): Promise<void> {
    if (this.pool instanceof GrpcBookieClientPool) await this.pool.refresh();
  }

  private checkOpen(): void {
    if (this.closed) throw new UnavailableError('the ledger client is closed; create a new one');
  }
}

export function createLedgerClient(opts: LedgerClientOptions): BookKeeperClient {
  return new BookKeeperClient(opts);
}
