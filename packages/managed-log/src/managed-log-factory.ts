import { type Clock, createRegistry, type Logger, silentLogger, systemClock } from '@sluice/common';
import type {
  LogOffloader,
  ManagedLog,
  ManagedLogConfig,
  ManagedLogFactoryOptions,
  SweepOptions,
} from './api.js';
import { resolveConfig } from './config.js';
import { LedgerListStore } from './ledger-list.js';
import { LogContext } from './log-context.js';
import { checkLogName } from './log-keys.js';
import { takeOverLog } from './log-recovery.js';
import { ManagedLogImpl } from './managed-log.js';
import { type LogMetrics, logMetrics } from './metrics.js';
import { logOffloader } from './offloader-adapter.js';
import { DEFAULT_SWEEP_GRACE_MS, type SweepResult, sweepOrphanLedgers } from './orphan-sweeper.js';

export { DEFAULT_SWEEP_GRACE_MS };

/**
 * Opens managed logs of one process. Opening a log takes it over: its last
 * ledger is fenced, so another process that had it open fails its next
 * append with FencedError. Opening a name already open here returns the same
 * log.
 */
export class ManagedLogFactory {
  private readonly logs = new Map<string, Promise<ManagedLogImpl>>();
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly metrics: LogMetrics;
  private readonly offloader: LogOffloader | undefined;

  constructor(private readonly opts: ManagedLogFactoryOptions) {
    this.clock = opts.clock ?? systemClock;
    this.logger = opts.logger ?? silentLogger;
    this.metrics = logMetrics(opts.registry ?? createRegistry(false));
    this.offloader = opts.offloader ? logOffloader(opts.offloader) : undefined;
  }

  open(name: string, config?: Partial<ManagedLogConfig>): Promise<ManagedLog> {
    checkLogName(name);
    let log = this.logs.get(name);
    if (!log) {
      log = this.doOpen(name, resolveConfig(this.opts.defaults, config));
      this.logs.set(name, log);
      log.catch(() => this.logs.delete(name));
    }
    return log;
  }

  private async doOpen(name: string, config: ManagedLogConfig): Promise<ManagedLogImpl> {
    const store = new LedgerListStore(this.opts.metadata, name);
    const { current, writer } = await takeOverLog(store, this.opts.ledgers, config, () => this.clock.now());
    const ctx = new LogContext(
      name,
      config,
      store,
      this.opts.metadata,
      this.opts.ledgers,
      this.offloader,
      this.clock,
      this.logger.child({ log: name }),
      this.metrics,
      current,
    );
    const log = new ManagedLogImpl(ctx, writer, () => this.logs.delete(name));
    try {
      await log.loadCursors();
    } catch (err) {
      await log.close().catch(() => undefined);
      throw err;
    }
    this.logger.info({ log: name, ledgers: current.list.ledgers.length }, 'managed log opened');
    return log;
  }

  /** Delete ledgers that name a managed log which no longer references them. */
  sweepOrphans(opts: SweepOptions & { log?: string } = {}): Promise<SweepResult> {
    const sweep: Parameters<typeof sweepOrphanLedgers>[2] = {
      graceMs: opts.graceMs ?? DEFAULT_SWEEP_GRACE_MS,
      now: this.clock.now(),
      logger: this.logger,
    };
    if (opts.log !== undefined) sweep.onlyLog = opts.log;
    return sweepOrphanLedgers(this.opts.metadata, this.opts.ledgers, sweep);
  }

  /** Close every log opened here. */
  async close(): Promise<void> {
    const all = [...this.logs.values()];
    this.logs.clear();
    await Promise.all(all.map((p) => p.then((l) => l.close()).catch(() => undefined)));
  }
}
