import { BOOKIE_NODE_OPTIONS, Bookie, bookieConfigSchema, semiSpaceChosen } from '@sluice/bookie';
import { InvalidArgumentError, loadConfig } from '@sluice/common';
import type { Command } from 'commander';

interface BookieFlags {
  metadata?: string;
  dataDir?: string;
  journalDir?: string;
  ledgerDir?: string;
  port?: string;
  httpPort?: string;
  addPort?: string;
  advertiseAddress?: string;
  rack?: string;
  bindHost?: string;
  config?: string;
}

/** `sluice bookie`: run one storage node until SIGTERM / SIGINT. */
export function registerBookieCommand(program: Command): void {
  program
    .command('bookie')
    .description(
      'run a bookie (storage node); settings: flags > SLUICE_BOOKIE_* env > --config file > defaults',
    )
    .option('--metadata <url>', 'metadata store, e.g. etcd://127.0.0.1:2379/sluice/main')
    .option('--data-dir <dir>', 'data dir (identity; default home of journal and ledgers)')
    .option('--journal-dir <dir>', 'journal (WAL) dir, ideally on its own disk (default <data-dir>/journal)')
    .option('--ledger-dir <dir>', 'entry log and index dir (default <data-dir>/ledgers)')
    .option('--port <port>', 'gRPC port (default 3181)')
    .option('--http-port <port>', 'HTTP port for /metrics, /healthz, /readyz (default 8000)')
    .option('--add-port <port>', 'add channel port: adds on plain TCP (default 3182; -1 disables it)')
    .option('--advertise-address <host:port>', 'address clients use to reach this bookie')
    .option('--rack <rack>', 'failure domain of this bookie (default "default")')
    .option('--bind-host <host>', 'address to listen on (default 0.0.0.0)')
    .option('--config <file>', 'JSON config file with any bookie setting')
    .action(async (flags: BookieFlags) => {
      let bookie: Bookie;
      try {
        const { config, ...rest } = flags;
        const cfg = loadConfig(bookieConfigSchema, {
          flags: rest as Record<string, unknown>,
          envPrefix: 'SLUICE_BOOKIE_',
          ...(config ? { file: config } : {}),
        });
        bookie = new Bookie({ config: cfg });
        await bookie.start();
        if (!semiSpaceChosen(process.execArgv, process.env.NODE_OPTIONS)) {
          bookie.logger.info(
            { recommended: BOOKIE_NODE_OPTIONS },
            `V8 runs this bookie with its default young generation; NODE_OPTIONS=${BOOKIE_NODE_OPTIONS} (the Helm chart sets it) cuts its collections about 3x`,
          );
        }
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        process.stderr.write(`sluice bookie: ${message}\n`);
        process.exit(err instanceof InvalidArgumentError ? 2 : 1);
      }
      let stopping = false;
      const shutdown = (signal: string) => {
        if (stopping) return;
        stopping = true;
        bookie.logger.info({ signal }, 'stopping bookie');
        bookie.stop().then(
          () => process.exit(0),
          (err: Error) => {
            process.stderr.write(`sluice bookie: stop failed: ${err.message}\n`);
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => shutdown('SIGTERM'));
      process.on('SIGINT', () => shutdown('SIGINT'));
    });
}
