import type { Server as HttpServer } from 'node:http';
import type { Http2Server, Http2Session } from 'node:http2';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { createLogger, createRegistry, type Logger, type Registry } from '@sluice/common';
import { type MetadataStore, openMetadataStore } from '@sluice/metadata';
import { MAX_GRPC_MESSAGE_BYTES } from '@sluice/proto';
import { HealthImplementation, service as healthService } from 'grpc-health-check';
import { AddChannelServer } from './add-channel-server.js';
import { bookieServiceDefinition, createBookieService } from './bookie-service.js';
import { BookieStore } from './bookie-store.js';
import { addPortOf, type BookieConfig, type BookieConfigInput, resolveBookieConfig } from './config.js';
import { DiskWatchdog } from './disk-watchdog.js';
import { GarbageCollector } from './garbage-collector.js';
import { createHttpEndpoints } from './http-server.js';
import { type BookieMetrics, createBookieMetrics, registerBookieStateGauges } from './metrics.js';
import { type BookieIdentity, ensureIdentity, Registrar } from './registration.js';

export interface BookieOptions {
  /** Settings; defaults are filled in for everything not given. */
  config: BookieConfigInput;
  /** Use this store instead of opening `config.metadata` (standalone shares one); the bookie does not close it. */
  metadataStore?: MetadataStore;
  /** Registry for metrics (default: a new one with process metrics). */
  registry?: Registry;
  logger?: Logger;
}

/** HTTP/2 flow-control window per connection: large pipelined add streams must not stall on 64 KiB. */
const SESSION_WINDOW_BYTES = 32 * 1024 * 1024;
/** Per-stream window (SETTINGS initialWindowSize): one add stream carries all of a client's adds. */
const STREAM_WINDOW_BYTES = 4 * 1024 * 1024;
const SHUTDOWN_GRACE_MS = 5000;

/**
 * A bookie: storage engine, gRPC + HTTP servers, registration, disk watchdog
 * and garbage collector, started and stopped as one.
 */
export class Bookie {
  readonly config: BookieConfig;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly metrics: BookieMetrics;
  private metadata: MetadataStore | undefined;
  private ownsMetadata = false;
  private store: BookieStore | undefined;
  private grpc: Server | undefined;
  private http: HttpServer | undefined;
  private addChannels: AddChannelServer | undefined;
  private watchdog: DiskWatchdog | undefined;
  private gc: GarbageCollector | undefined;
  private registrar: Registrar | undefined;
  private health = new HealthImplementation({ '': 'NOT_SERVING', 'sluice.v1.BookieService': 'NOT_SERVING' });
  private identity: BookieIdentity | undefined;
  private started = false;
  /** Bound gRPC port (differs from config.port when that is 0). */
  port = 0;
  /** Bound HTTP port (-1 when disabled). */
  httpPort = -1;
  /** Bound add channel port (-1 when disabled). */
  addPort = -1;

  constructor(private readonly opts: BookieOptions) {
    this.config = resolveBookieConfig(opts.config);
    this.registry = opts.registry ?? createRegistry();
    this.logger = opts.logger ?? createLogger('bookie');
    this.metrics = createBookieMetrics(this.registry);
    registerBookieStateGauges(this.registry, {
      sessionUp: () => this.registrar?.sessionUp ?? false,
      registered: () => this.registrar?.registered ?? false,
      disk: () => ({ freeBytes: this.watchdog?.freeBytes ?? 0, totalBytes: this.watchdog?.totalBytes ?? 0 }),
      spareLogs: () => this.store?.storage.spareLogs ?? { count: 0, bytes: 0 },
      deleting: () => ({
        files: this.store?.deleter.pendingFiles ?? 0,
        bytes: this.store?.deleter.pendingBytes ?? 0,
      }),
    });
  }

  get journalDir(): string {
    return this.config.journalDir ?? join(this.config.dataDir, 'journal');
  }

  get ledgerDir(): string {
    return this.config.ledgerDir ?? join(this.config.dataDir, 'ledgers');
  }

  get bookieId(): string {
    if (!this.identity) throw new Error('bookie is not started');
    return this.identity.bookieId;
  }

  get address(): string {
    return this.config.advertiseAddress ?? `${hostname()}:${this.port}`;
  }

  /** host:port of the add channel: the advertised host, the bound port; undefined when it is off. */
  get addAddress(): string | undefined {
    if (this.addPort < 0) return undefined;
    const a = this.address;
    return `${a.slice(0, a.lastIndexOf(':'))}:${this.addPort}`;
  }

  /** The storage engine (for tests and in-process tooling). */
  get storage(): BookieStore {
    if (!this.store) throw new Error('bookie is not started');
    return this.store;
  }

  get garbageCollector(): GarbageCollector {
    if (!this.gc) throw new Error('bookie is not started');
    return this.gc;
  }

  get diskWatchdog(): DiskWatchdog {
    if (!this.watchdog) throw new Error('bookie is not started');
    return this.watchdog;
  }

  async start(): Promise<void> {
    try {
      await this.startInner();
    } catch (err) {
      await this.stop().catch(() => undefined);
      throw err;
    }
  }

  private async startInner(): Promise<void> {
    const cfg = this.config;
    this.metadata = this.opts.metadataStore;
    if (!this.metadata) {
      this.metadata = await openMetadataStore(cfg.metadata, { logger: this.logger });
      this.ownsMetadata = true;
    }
    this.identity = await ensureIdentity(
      this.metadata,
      { dataDir: cfg.dataDir, journalDir: this.journalDir, ledgerDir: this.ledgerDir },
      this.logger,
    );
    const logger = this.logger.child({ bookieId: this.identity.bookieId });

    const store = new BookieStore({
      journalDir: this.journalDir,
      ledgerDir: this.ledgerDir,
      journalGroupBytes: cfg.journalGroupBytes,
      journalGroupWaitMs: cfg.journalGroupWaitMs,
      journalMaxWritesInFlight: cfg.journalMaxWritesInFlight,
      journalFileBytes: cfg.journalFileBytes,
      journalSync: cfg.journalSync,
      journalPreallocBytes: cfg.journalPreallocBytes,
      entryLogFileBytes: cfg.entryLogFileBytes,
      entryLogSpareBytes: cfg.entryLogSpareBytes,
      fileDeleteBytesPerSec: cfg.fileDeleteRate,
      compactionBytesPerSec: cfg.compactionRate,
      checkpointIntervalMs: cfg.checkpointIntervalMs,
      writeCacheBytes: cfg.writeCacheBytes,
      entryLogSyncBytes: cfg.entryLogSyncBytes,
      indexSpreadRecords: cfg.indexSpreadRecords,
      entryLogDirectBytes: cfg.entryLogDirectBytes,
      entryLogDirectBacklogBytes: cfg.entryLogDirectBacklogBytes,
      entryLogDirectIo: cfg.entryLogDirectIo,
      maxEntryBytes: cfg.maxEntryBytes,
      logger,
      metrics: this.metrics,
    });
    this.store = store;
    if (!cfg.journalSync) logger.warn('journalSync is off: acknowledged adds CAN BE LOST on a crash');
    await store.open();

    this.watchdog = new DiskWatchdog({
      dirs: [this.journalDir, this.ledgerDir],
      threshold: cfg.diskUsageThreshold,
      lwmThreshold: cfg.diskUsageLwmThreshold,
      intervalMs: cfg.diskCheckIntervalMs,
      logger,
      metrics: this.metrics,
      onChange: (reason) => store.setReadOnly('disk', reason),
      releaseSpace: async () => (await store.storage.dropSpareLogs()) + (await store.deleter.hurry()),
      onChecked: () => void this.registrar?.refreshCapacity(),
    });
    await this.watchdog.start();

    this.grpc = new Server({
      'grpc.max_receive_message_length': MAX_GRPC_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_GRPC_MESSAGE_BYTES,
    });
    const watchdog = this.watchdog;
    const identity = this.identity;
    this.grpc.addService(
      bookieServiceDefinition(),
      createBookieService({
        store,
        logger,
        metrics: this.metrics,
        maxInFlightBytesPerStream: cfg.maxInFlightBytesPerStream,
        maxInFlightAddsPerStream: cfg.maxInFlightAddsPerStream,
        info: () => ({
          bookieId: identity.bookieId,
          freeBytes: watchdog.freeBytes,
          totalBytes: watchdog.totalBytes,
        }),
      }),
    );
    this.health.addToServer(this.grpc as unknown as Parameters<HealthImplementation['addToServer']>[0]);
    void healthService;
    const grpc = this.grpc;
    this.port = await new Promise<number>((resolve, reject) =>
      grpc.bindAsync(`${cfg.bindHost}:${cfg.port}`, ServerCredentials.createInsecure(), (err, port) =>
        err
          ? reject(new Error(`cannot listen on ${cfg.bindHost}:${cfg.port}: ${err.message}`))
          : resolve(port),
      ),
    );
    this.widenFlowControlWindows(grpc);

    const addPort = addPortOf(cfg);
    if (addPort >= 0) {
      this.addChannels = new AddChannelServer({
        store,
        logger,
        metrics: this.metrics,
        maxInFlightBytesPerStream: cfg.maxInFlightBytesPerStream,
        maxInFlightAddsPerStream: cfg.maxInFlightAddsPerStream,
      });
      this.addPort = await this.addChannels.listen(cfg.bindHost, addPort);
    }

    if (cfg.httpPort >= 0) {
      this.http = createHttpEndpoints({
        registry: this.registry,
        healthy: () => {
          const failed = store.journal.failed ?? store.storage.failed;
          return failed
            ? { ok: false, detail: `storage failed: ${failed.message}` }
            : { ok: true, detail: 'ok' };
        },
        ready: () => {
          if (!this.started) return { ok: false, detail: 'starting' };
          if (!this.registrar?.registered)
            return { ok: false, detail: 'not registered in metadata (no live metadata session)' };
          return {
            ok: true,
            detail: store.readOnly ? `ready (read-only: ${store.readOnlyMessage()})` : 'ready',
          };
        },
      });
      const http = this.http;
      this.httpPort = await new Promise<number>((resolve, reject) => {
        http.once('error', (err) =>
          reject(new Error(`cannot listen on HTTP port ${cfg.httpPort}: ${err.message}`)),
        );
        http.listen(cfg.httpPort, cfg.bindHost, () => {
          const a = http.address();
          resolve(typeof a === 'object' && a ? a.port : cfg.httpPort);
        });
      });
    }

    this.registrar = new Registrar({
      store: this.metadata,
      identity: this.identity,
      sessionTtlMs: cfg.sessionTtlMs,
      capacityRefreshMs: cfg.capacityRefreshMs,
      logger,
      describe: () => ({
        address: this.address,
        ...(this.addAddress ? { addAddress: this.addAddress } : {}),
        rack: cfg.rack,
        readOnly: store.readOnly,
        freeBytes: watchdog.freeBytes,
        totalBytes: watchdog.totalBytes,
      }),
    });
    await this.registrar.start();
    store.onStateChange((readOnly) => {
      void this.registrar?.update();
      logger.info(
        { readOnly, reason: store.readOnlyMessage() },
        readOnly ? 'bookie is read-only' : 'bookie is writable',
      );
    });

    this.gc = new GarbageCollector({
      store,
      metadata: this.metadata,
      intervalMs: cfg.gcIntervalMs,
      gracePeriodMs: cfg.gcGracePeriodMs,
      compactionThreshold: cfg.compactionThreshold,
      logger,
      metrics: this.metrics,
    });
    this.gc.start();
    this.health.setStatus('', 'SERVING');
    this.health.setStatus('sluice.v1.BookieService', 'SERVING');
    this.started = true;
    logger.info(
      {
        address: this.address,
        port: this.port,
        addPort: this.addPort,
        httpPort: this.httpPort,
        journalDir: this.journalDir,
        ledgerDir: this.ledgerDir,
      },
      'bookie started',
    );
  }

  /** grpc-js keeps HTTP/2 windows at 64 KiB; raise the connection's and each stream's (best effort). */
  private widenFlowControlWindows(server: Server): void {
    const servers = (server as unknown as { http2Servers?: Map<Http2Server, unknown> }).http2Servers;
    if (!(servers instanceof Map)) return;
    for (const h2 of servers.keys()) {
      h2.on('session', (session: Http2Session) => {
        try {
          session.setLocalWindowSize(SESSION_WINDOW_BYTES);
          session.settings({ initialWindowSize: STREAM_WINDOW_BYTES });
        } catch (err) {
          this.logger.debug({ err }, 'could not widen the HTTP/2 window');
        }
      });
    }
  }

  async stop(): Promise<void> {
    this.started = false;
    this.health.setStatus('', 'NOT_SERVING');
    this.health.setStatus('sluice.v1.BookieService', 'NOT_SERVING');
    await this.registrar?.stop();
    this.registrar = undefined;
    await this.gc?.stop();
    this.gc = undefined;
    this.watchdog?.stop();
    this.watchdog = undefined;
    const grpc = this.grpc;
    this.grpc = undefined;
    if (grpc) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          grpc.forceShutdown();
          resolve();
        }, SHUTDOWN_GRACE_MS);
        grpc.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    const addChannels = this.addChannels;
    this.addChannels = undefined;
    this.addPort = -1;
    await addChannels?.close();
    const http = this.http;
    this.http = undefined;
    if (http) {
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    }
    await this.store?.close();
    this.store = undefined;
    if (this.ownsMetadata) await this.metadata?.close();
    this.metadata = undefined;
  }
}
