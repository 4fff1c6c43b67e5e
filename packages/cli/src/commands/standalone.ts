import { mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { Bookie, type BookieConfig, bookieConfigSchema } from '@sluice/bookie';
import { BrokerRuntime } from '@sluice/broker';
import { createLogger, createRegistry, InvalidArgumentError, loadConfig } from '@sluice/common';
import { EmbeddedMetadataStore } from '@sluice/metadata';
import type { Command } from 'commander';
import { onSignals } from './broker.js';
import { LocalBookieClient } from './standalone-local-bookie.js';

interface StandaloneFlags {
  dataDir: string;
  port: string;
  httpPort: string;
  bookiePort: string;
  bindHost: string;
  metricsPerTopic?: boolean;
}

/**
 * The in-process bookie's settings: storage ones (journal, entry logs,
 * caches) from `SLUICE_BOOKIE_*` with `sluice bookie`'s defaults; where it
 * lives and listens is the standalone's.
 *
 * One default differs: the journal writes one group at a time unless
 * `SLUICE_BOOKIE_JOURNAL_MAX_WRITES_IN_FLIGHT` says otherwise. A second
 * write in flight buys a dedicated bookie add latency and throughput when
 * the disk is its limit, but here the bookie shares its process's CPU with
 * the broker, which is the limit at high rates: measured at 50k msg/s,
 * two in flight cost the standalone 5.6% more CPU (docs/performance.md,
 * eleventh pass).
 */
export function standaloneBookieConfig(
  dataDir: string,
  bookiePort: number,
  env: NodeJS.ProcessEnv = process.env,
): BookieConfig {
  return loadConfig(bookieConfigSchema, {
    env,
    envPrefix: 'SLUICE_BOOKIE_',
    flags: {
      metadata: `embedded://${join(dataDir, 'metadata')}`,
      dataDir: join(dataDir, 'bookie'),
      port: bookiePort,
      // The broker reaches its own bookie in-process; a bookie of its own needs no add channel.
      addPort: -1,
      httpPort: -1,
      bindHost: '127.0.0.1',
      advertiseAddress: `127.0.0.1:${bookiePort}`,
      journalMaxWritesInFlight: env.SLUICE_BOOKIE_JOURNAL_MAX_WRITES_IN_FLIGHT === undefined ? 1 : undefined,
    },
  });
}

function port(text: string, what: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    throw new InvalidArgumentError(`${what} '${text}' is invalid; use a port number from 0 to 65535`);
  }
  return n;
}

/**
 * The broker's gRPC port. The broker advertises `localhost:<port>` to clients
 * (lookups answer with it) before it binds, so 0 ("any free port") would be
 * advertised as port 0: refused.
 */
export function brokerPort(text: string): number {
  const n = port(text, '--port');
  if (n === 0) {
    throw new InvalidArgumentError(
      "--port '0' is invalid: the broker advertises the port it is given to clients; use a port number from 1 to 65535",
    );
  }
  return n;
}

/** The bookie must advertise the port it binds, so pick a free loopback port up front. */
function freeLoopbackPort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const p = (srv.address() as { port: number }).port;
      srv.close(() => resolvePort(p));
    });
  });
}

/**
 * `sluice standalone`: embedded metadata, one in-process bookie, filesystem
 * offload and a broker in one process, everything under --data-dir. A
 * restart finds every topic, ledger and cursor where it was.
 */
export function registerStandaloneCommand(program: Command): void {
  program
    .command('standalone')
    .description(
      'run metadata, a bookie and a broker in one process (data under --data-dir; bookie storage settings from SLUICE_BOOKIE_* env)',
    )
    .option('--data-dir <dir>', 'where everything is stored', './data')
    .option('--port <port>', 'broker gRPC port', '6650')
    .option('--http-port <port>', 'broker HTTP port (/metrics, /healthz, /readyz)', '8080')
    .option('--bookie-port <port>', 'in-process bookie gRPC port (0 = any free port)', '0')
    .option('--bind-host <host>', 'address to listen on', '0.0.0.0')
    .option('--metrics-per-topic', 'label metrics per topic as well as per namespace (many series)')
    .action(async (flags: StandaloneFlags) => {
      const logger = createLogger('standalone');
      const registry = createRegistry();
      let metadata: EmbeddedMetadataStore | undefined;
      let bookie: Bookie | undefined;
      let runtime: BrokerRuntime | undefined;
      const stopAll = async (): Promise<void> => {
        await runtime?.close();
        await bookie?.stop();
        await metadata?.close();
      };
      try {
        const grpcPort = brokerPort(flags.port);
        const httpPort = port(flags.httpPort, '--http-port');
        const bookiePort = port(flags.bookiePort, '--bookie-port') || (await freeLoopbackPort());
        const dataDir = resolve(flags.dataDir);
        mkdirSync(join(dataDir, 'offload'), { recursive: true });
        metadata = await EmbeddedMetadataStore.open({ dataDir: join(dataDir, 'metadata'), logger });
        bookie = new Bookie({
          config: standaloneBookieConfig(dataDir, bookiePort),
          metadataStore: metadata,
          registry,
          logger: logger.child({ c: 'bookie' }),
        });
        await bookie.start();
        runtime = await BrokerRuntime.start({
          metadata,
          port: grpcPort,
          httpPort,
          bindHost: flags.bindHost,
          advertiseAddress: `localhost:${grpcPort}`,
          offloadUrl: `file://${join(dataDir, 'offload')}`,
          defaultPersistence: { ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 },
          // The broker reaches its own bookie in-process; the bookie's gRPC port stays up for tools.
          localBookies: [new LocalBookieClient(bookie)],
          // One process: no other broker can take over, so a short TTL buys nothing.
          sessionTtlMs: 10_000,
          metricsPerTopic: flags.metricsPerTopic === true,
          registry,
          logger: logger.child({ c: 'broker' }),
        });
        onSignals(stopAll);
        const b = runtime.broker;
        process.stdout.write(
          `sluice standalone: gRPC on ${flags.bindHost}:${b.port} (advertised ${b.address}), HTTP on ${flags.bindHost}:${b.httpPort}, data in ${dataDir}\n`,
        );
      } catch (err) {
        await stopAll().catch(() => undefined);
        const message = err instanceof Error ? err.message : String(err);
        process.stderr.write(`sluice standalone: ${message}\n`);
        process.exit(err instanceof InvalidArgumentError ? 2 : 1);
      }
    });
}
