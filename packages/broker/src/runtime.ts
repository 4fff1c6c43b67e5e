import { createLogger, createRegistry, type Logger, type Registry } from '@sluice/common';
import { Auditor, type BookieClient, BookKeeperClient } from '@sluice/ledger';
import { type ManagedLogConfig, ManagedLogFactory } from '@sluice/managed-log';
import type { MetadataStore } from '@sluice/metadata';
import { type Offloader, openOffloader } from '@sluice/offload';
import { Broker, type BrokerOptions } from './broker.js';

export interface BrokerRuntimeOptions extends Omit<BrokerOptions, 'logs' | 'metadata'> {
  metadata: MetadataStore;
  /** Cold tier URL (`file:///dir` or `s3://bucket/prefix?...`); none disables offload. */
  offloadUrl?: string;
  /** Managed-log settings for every topic (policies override persistence/retention/offload). */
  logDefaults?: Partial<ManagedLogConfig>;
  /**
   * Run an autorecovery auditor in this process (leader election keeps one
   * active per cluster): a bookie unregistered for longer than `gracePeriodMs`
   * has its ledger fragments copied to other bookies. Unset: no auditor.
   */
  autorecovery?: { gracePeriodMs: number };
  /**
   * Clients for bookies in this process (standalone's own bookie): the ledger
   * client reaches them directly instead of over loopback gRPC, and closes them.
   */
  localBookies?: BookieClient[];
  registry?: Registry;
  logger?: Logger;
}

/** A broker with its ledger client, managed-log factory and offloader: what `sluice broker` runs. */
export class BrokerRuntime {
  private constructor(
    readonly broker: Broker,
    private readonly ledgers: BookKeeperClient,
    private readonly logs: ManagedLogFactory,
    private readonly offloader: Offloader | undefined,
    private readonly auditor: Auditor | undefined,
  ) {}

  static async start(opts: BrokerRuntimeOptions): Promise<BrokerRuntime> {
    const registry = opts.registry ?? createRegistry();
    const logger = opts.logger ?? createLogger('broker');
    const ledgers = new BookKeeperClient({
      metadata: opts.metadata,
      ...(opts.localBookies ? { localClients: opts.localBookies } : {}),
      registry,
      logger: logger.child({ c: 'ledger' }),
    });
    const offloader = opts.offloadUrl ? openOffloader(opts.offloadUrl) : undefined;
    const logs = new ManagedLogFactory({
      metadata: opts.metadata,
      ledgers,
      ...(offloader ? { offloader } : {}),
      registry,
      logger: logger.child({ c: 'managed-log' }),
      ...(opts.logDefaults ? { defaults: opts.logDefaults } : {}),
    });
    let broker: Broker | undefined;
    let auditor: Auditor | undefined;
    try {
      broker = await Broker.start({ ...opts, logs, registry, logger });
      if (opts.autorecovery) {
        const owner = broker;
        auditor = new Auditor({
          metadata: opts.metadata,
          gracePeriodMs: opts.autorecovery.gracePeriodMs,
          // One lease per process: the etcd client keeps a keepalive stream per lease.
          sharedSession: () => owner.liveSession(),
          name: broker.self.brokerId,
          registry,
          logger: logger.child({ c: 'autorecovery' }),
        });
        await auditor.start();
      }
      return new BrokerRuntime(broker, ledgers, logs, offloader, auditor);
    } catch (err) {
      await auditor?.close().catch(() => undefined);
      await broker?.close().catch(() => undefined);
      await logs.close().catch(() => undefined);
      await ledgers.close().catch(() => undefined);
      await offloader?.close().catch(() => undefined);
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.auditor?.close().catch(() => undefined);
    await this.broker.close();
    await this.logs.close().catch(() => undefined);
    await this.ledgers.close().catch(() => undefined);
    await this.offloader?.close().catch(() => undefined);
  }
}
