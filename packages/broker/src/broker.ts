import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { Server, ServerCredentials, type ServiceDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import {
  backoffDelay,
  createLogger,
  createRegistry,
  type Logger,
  NotFoundError,
  type Registry,
  SessionLostError,
  UnavailableError,
} from '@sluice/common';
import type { MetadataStore, Session } from '@sluice/metadata';
import { LOADER_OPTIONS, loadProto, MAX_GRPC_MESSAGE_BYTES } from '@sluice/proto';
import { HealthImplementation } from 'grpc-health-check';
import { AdminClientPool } from './admin-client-pool.js';
import { createAdminService } from './admin-service.js';
import { type BrokerMetrics, brokerMetrics } from './broker-metrics.js';
import { type BrokerRecord, BrokerRegistry } from './broker-registry.js';
import { ClusterResources } from './cluster-resources.js';
import { consumerServiceDefinition, createConsumerService } from './consumer-service.js';
import { startHttpServer } from './http-server.js';
import { createLookupService } from './lookup-service.js';
import { BOOKIES_AVAILABLE_PREFIX } from './metadata-keys.js';
import { Ownership, type SelfIdentity } from './ownership.js';
import type { PersistencePolicy } from './policies.js';
import { createProducerService, generateNamePrefix } from './producer-service.js';
import type { ProducerHandle } from './topic.js';
import { type LogProvider, TopicManager } from './topic-manager.js';

export interface BrokerOptions {
  metadata: MetadataStore;
  logs: LogProvider;
  /** Interface to bind (default 0.0.0.0). */
  bindHost?: string;
  /** gRPC port (0 = any free port). */
  port: number;
  /** HTTP port for /metrics, /healthz, /readyz (0 = any free port). */
  httpPort: number;
  /** "host:port" other brokers and clients dial (default: this host's name and the bound port). */
  advertiseAddress?: string;
  /** HTTP "host:port" advertised (default: the advertised host and the bound HTTP port). */
  advertiseHttpAddress?: string;
  /** Stable id (default: the advertised address). */
  brokerId?: string;
  /** Persistence of namespaces created without one (and of public/default). */
  defaultPersistence: PersistencePolicy;
  /** Metadata session TTL: a dead broker's bundles move after at most this long. */
  sessionTtlMs?: number;
  /** How often the load report in `brokers/<id>` is refreshed. */
  loadReportIntervalMs?: number;
  /** Sends in flight per producer before its stream stops being read. */
  maxInFlightPerProducer?: number;
  /** Label traffic, backlog and storage metrics per topic as well as per namespace (default false). */
  metricsPerTopic?: boolean;
  /** Create tenant `public` and namespace `public/default` when missing (default true). */
  bootstrapDefaultNamespace?: boolean;
  registry?: Registry;
  logger?: Logger;
}

const DEFAULT_SESSION_TTL_MS = 10_000;

/**
 * A stateless broker: gRPC (Lookup, Produce, Consume, Admin, health,
 * reflection) on one port, HTTP probes and metrics on another. Everything it
 * serves is rebuilt from metadata and bookies when another broker takes over.
 */
export class Broker {
  readonly logger: Logger;
  readonly registry: Registry;
  private session: Session | undefined;
  private closing = false;
  /** Set once the default namespace exists and the policy watches run: only then is the broker ready. */
  private started = false;
  private loadTimer: NodeJS.Timeout | undefined;
  /** The load report in flight, awaited before deregistering so it cannot re-create `brokers/<id>`. */
  private reporting: Promise<void> = Promise.resolve();
  private reconnecting: Promise<void> | undefined;
  private readonly producers = new Set<ProducerHandle>();
  private readonly health = new HealthImplementation({ '': 'NOT_SERVING' });
  private readonly clients = new AdminClientPool();
  private readonly startedAt = Date.now();
  private readonly metrics: BrokerMetrics;
  readonly resources: ClusterResources;
  readonly ownership: Ownership;
  readonly topics: TopicManager;
  private readonly brokers: BrokerRegistry;

  private constructor(
    private readonly opts: BrokerOptions,
    private readonly grpc: Server,
    readonly port: number,
    private readonly http: HttpServer,
    readonly httpPort: number,
    readonly self: SelfIdentity,
  ) {
    this.logger = opts.logger ?? createLogger('broker', { brokerId: self.brokerId });
    this.registry = opts.registry ?? createRegistry();
    this.metrics = brokerMetrics(
      this.registry,
      {
        topics: () => this.topics.all(),
        ownedBundles: () => this.ownership.ownedKeys().length,
        sessionUp: () => this.session !== undefined && !this.session.lost,
      },
      { perTopic: opts.metricsPerTopic === true },
    );
    this.resources = new ClusterResources(opts.metadata, opts.defaultPersistence);
    this.ownership = new Ownership(opts.metadata, self);
    this.brokers = new BrokerRegistry(opts.metadata);
    this.topics = new TopicManager(
      opts.metadata,
      this.resources,
      this.ownership,
      opts.logs,
      this.logger,
      this.metrics.counters,
    );
  }

  get address(): string {
    return this.self.address;
  }

  get httpAddress(): string {
    return this.self.httpAddress;
  }

  static async start(opts: BrokerOptions): Promise<Broker> {
    const bindHost = opts.bindHost ?? '0.0.0.0';
    const grpc = new Server({
      'grpc.max_receive_message_length': MAX_GRPC_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_GRPC_MESSAGE_BYTES,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_permit_without_calls': 1,
    });
    const port = await new Promise<number>((resolve, reject) =>
      grpc.bindAsync(`${bindHost}:${opts.port}`, ServerCredentials.createInsecure(), (err, p) =>
        err
          ? reject(new UnavailableError(`cannot listen on ${bindHost}:${opts.port}: ${err.message}`))
          : resolve(p),
      ),
    );
    raiseWindow(grpc);
    let broker: Broker | undefined;
    const registry = opts.registry ?? createRegistry();
    const logger = opts.logger ?? createLogger('broker');
    let http: HttpServer;
    try {
      http = await startHttpServer(
        bindHost,
        opts.httpPort,
        registry,
        {
          notReadyReason: () => (broker ? broker.notReadyReason() : Promise.resolve('starting')),
        },
        logger,
      );
    } catch (err) {
      grpc.forceShutdown();
      throw new UnavailableError(
        `cannot listen for HTTP on ${bindHost}:${opts.httpPort}: ${(err as Error).message}`,
      );
    }
    const httpPort = (http.address() as AddressInfo).port;
    const advertiseHost = opts.advertiseAddress ? hostOf(opts.advertiseAddress) : hostname();
    const address = opts.advertiseAddress ?? `${advertiseHost}:${port}`;
    const self: SelfIdentity = {
      brokerId: opts.brokerId ?? address,
      address,
      httpAddress: opts.advertiseHttpAddress ?? `${advertiseHost}:${httpPort}`,
    };
    broker = new Broker({ ...opts, registry, logger }, grpc, port, http, httpPort, self);
    try {
      await broker.init();
    } catch (err) {
      await broker.close();
      throw err;
    }
    return broker;
  }

  private async init(): Promise<void> {
    this.addServices();
    await this.connectSession();
    if (this.opts.bootstrapDefaultNamespace !== false) {
      await this.resources.createTenant('public', true);
      await this.resources.createNamespace(
        'public/default',
        { persistence: { ...this.opts.defaultPersistence } },
        true,
      );
    }
    await this.topics.start();
    const interval = this.opts.loadReportIntervalMs ?? 5000;
    this.loadTimer = setInterval(() => {
      this.reporting = this.reportLoad().catch((err) => this.logger.debug({ err }, 'load report failed'));
    }, interval);
    this.loadTimer.unref();
    this.started = true;
    this.health.setStatus('', 'SERVING');
    this.logger.info({ address: this.address, http: this.httpAddress }, 'broker serving');
  }

  private addServices(): void {
    const broker = loadProto('broker.proto') as unknown as ProtoPkg;
    const admin = loadProto('admin.proto') as unknown as ProtoPkg;
    const lookupDeps = {
      topics: this.topics,
      ownership: this.ownership,
      registry: this.brokers,
      resources: this.resources,
      self: this.self,
      logger: this.logger,
    };
    this.grpc.addService(broker.sluice.v1.LookupService.service, createLookupService(lookupDeps));
    this.grpc.addService(
      broker.sluice.v1.ProducerService.service,
      createProducerService(
        this.topics,
        {
          maxInFlight: this.opts.maxInFlightPerProducer ?? 1000,
          namePrefix: generateNamePrefix(this.self.brokerId.replace(/[^A-Za-z0-9]/g, '-')),
          observePublishLatency: this.metrics.observePublishLatency,
        },
        this.logger,
        (p) => {
          this.producers.add(p);
          return () => this.producers.delete(p);
        },
      ),
    );
    this.grpc.addService(
      consumerServiceDefinition(broker.sluice.v1.ConsumerService.service),
      createConsumerService(this.topics, this.logger),
    );
    this.grpc.addService(
      admin.sluice.v1.AdminService.service,
      createAdminService({
        resources: this.resources,
        topics: this.topics,
        ownership: this.ownership,
        self: this.self,
        clients: this.clients,
        logger: this.logger,
      }),
    );
    this.health.addToServer(this.grpc);
    const defs = loadSync(
      ['sluice/v1/broker.proto', 'sluice/v1/admin.proto', 'sluice/v1/batch.proto'],
      LOADER_OPTIONS,
    );
    new ReflectionService(defs).addToServer(this.grpc);
  }

  /**
   * Create a session and register on it; only then does ownership use it. A
   * session that fails to register is closed: left open, its keepalive would
   * renew it (and any key taken on it) until the process exits.
   */
  private async connectSession(): Promise<void> {
    const session = await this.opts.metadata.createSession(this.opts.sessionTtlMs ?? DEFAULT_SESSION_TTL_MS);
    // Before publishing: a loss during it must not go unnoticed (listeners added later never fire).
    session.onLost((err) => this.onSessionLost(session, err));
    try {
      await this.brokers.publish(session, this.record());
      if (session.lost) throw new SessionLostError('the metadata session ended while registering the broker');
      if (this.closing) throw new UnavailableError('the broker is shutting down');
    } catch (err) {
      await session.close().catch(() => undefined);
      throw err;
    }
    this.session = session;
    this.ownership.useSession(session);
  }

  /**
   * The live metadata session, after any reconnect in progress: for a
   * component in this process that campaigns or keeps keys on the broker's
   * lease rather than on one of its own. Rejects once the broker is closing.
   */
  async liveSession(): Promise<Session> {
    for (;;) {
      if (this.closing) throw new UnavailableError('the broker is shutting down; its metadata session ends');
      const session = this.session;
      if (session && !session.lost) return session;
      const reconnecting = this.reconnecting;
      if (!reconnecting) throw new UnavailableError('the broker has no live metadata session; try again');
      await reconnecting.catch(() => undefined);
    }
  }

  /** Stop serving at once: nothing this broker owned is still ours. Then rejoin with a new session. */
  private onSessionLost(session: Session, err: Error): void {
    if (this.session !== session || this.closing) return;
    this.logger.error({ err }, 'metadata session lost; closing every topic and re-registering');
    this.health.setStatus('', 'NOT_SERVING');
    this.session = undefined;
    this.ownership.useSession(undefined);
    const reason = new SessionLostError('the broker lost its metadata session; look the topic up again');
    for (const p of [...this.producers]) p.kick(reason);
    this.reconnecting ??= (async () => {
      await this.topics.closeAll(reason, false);
      for (let attempt = 0; !this.closing; attempt++) {
        try {
          await this.connectSession();
          this.health.setStatus('', 'SERVING');
          this.logger.info('metadata session re-established');
          return;
        } catch (e) {
          if (this.closing) return;
          this.logger.warn({ err: e }, 'cannot re-establish the metadata session yet');
          await new Promise((r) => setTimeout(r, backoffDelay(attempt)));
        }
      }
    })().finally(() => {
      this.reconnecting = undefined;
    });
  }

  private record(): BrokerRecord {
    let producers = 0;
    let consumers = 0;
    let msgRateIn = 0;
    for (const t of this.topics.all()) {
      producers += t.producers.size;
      msgRateIn += t.rates.msgIn;
      for (const s of t.subscriptions.values()) consumers += s.consumerCount();
    }
    const bundles = this.ownership.ownedKeys().length;
    return {
      ...this.self,
      load: { bundles, topics: this.topics.count(), producers, consumers, msgRateIn },
      startedAt: this.startedAt,
      updatedAt: Date.now(),
    };
  }

  private async reportLoad(): Promise<void> {
    const now = Date.now();
    for (const t of this.topics.all()) t.sampleRates(now);
    const session = this.session;
    if (!session || session.lost || this.closing) return;
    await this.brokers.publish(session, this.record());
  }

  /** Delete `brokers/<id>` so that lookups elsewhere stop picking this broker for unowned bundles. */
  private async deregister(): Promise<void> {
    const session = this.session;
    if (!session || session.lost) return;
    await this.brokers
      .unpublish(this.self.brokerId)
      .catch((err) => this.logger.warn({ err }, 'cannot deregister; the record goes when the session ends'));
  }

  /**
   * Null when ready: a live metadata session and enough writable bookies for
   * the default persistence (the ensemble size of public/default, or the
   * broker's default when that namespace is absent).
   */
  async notReadyReason(): Promise<string | null> {
    if (this.closing) return 'shutting down';
    if (!this.started) return 'starting: bootstrapping the default namespace and watching policies';
    if (!this.session || this.session.lost) return 'no live metadata session';
    const need = await this.resources.namespacePolicies('public/default').then(
      (p) => p.persistence.ensembleSize,
      (err: unknown) => {
        if (err instanceof NotFoundError) return this.opts.defaultPersistence.ensembleSize;
        throw err;
      },
    );
    const bookies = await this.opts.metadata.listAll(BOOKIES_AVAILABLE_PREFIX, { keysOnly: true });
    if (bookies.length < need)
      return `${bookies.length} writable bookie(s), ${need} needed for the default persistence`;
    return null;
  }

  /**
   * Clean shutdown, in an order that sends clients elsewhere and loses no
   * state: refuse new topics and lookups, leave the broker registry, close
   * topics (persisting cursors and dedup state), then end the session, which
   * releases every ownership key at once. Until then those keys still name
   * this broker, which is why acquires are refused from the start.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.topics.refuseNewTopics();
    this.health.setStatus('', 'NOT_SERVING');
    if (this.loadTimer) clearInterval(this.loadTimer);
    await this.reporting;
    await this.deregister();
    await this.topics.stop();
    const reason = new UnavailableError('the broker is shutting down; look the topic up again');
    for (const p of [...this.producers]) p.kick(reason);
    await this.topics.closeAll(reason, true);
    await this.reconnecting;
    this.ownership.useSession(undefined);
    await this.session?.close().catch(() => undefined);
    this.clients.close();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.grpc.forceShutdown();
        resolve();
      }, 2000);
      this.grpc.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    this.http.closeAllConnections?.();
    await new Promise<void>((r) => this.http.close(() => r()));
  }
}

interface ProtoPkg {
  sluice: { v1: Record<string, { service: ServiceDefinition }> };
}

function hostOf(address: string): string {
  const i = address.lastIndexOf(':');
  return i > 0 ? address.slice(0, i) : address;
}

/**
 * grpc-js keeps HTTP/2's 64 KiB receive windows; a producer streaming large
 * batches then waits an event-loop round trip per 64 KiB. Raise each
 * session's connection window and (via SETTINGS) every stream's window.
 */
function raiseWindow(server: Server): void {
  const servers = (
    server as unknown as { http2Servers?: Map<{ on(ev: string, fn: (s: unknown) => void): void }, unknown> }
  ).http2Servers;
  if (!servers) return;
  for (const h2 of servers.keys()) {
    h2.on('session', (s) => {
      const session = s as {
        setLocalWindowSize?: (n: number) => void;
        settings?: (settings: { initialWindowSize: number }) => void;
      };
      try {
        session.setLocalWindowSize?.(8 * 1024 * 1024);
        session.settings?.({ initialWindowSize: 4 * 1024 * 1024 });
      } catch {
        // Sessions that already closed cannot be resized.
      }
    });
  }
}
