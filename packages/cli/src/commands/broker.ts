import { BrokerRuntime, brokerConfigSchema, metadataUrlFor } from '@sluice/broker';
import { InvalidArgumentError, loadConfig } from '@sluice/common';
import { openMetadataStore } from '@sluice/metadata';
import type { Command } from 'commander';

interface BrokerFlags {
  metadata?: string;
  cluster?: string;
  port?: string;
  httpPort?: string;
  bindHost?: string;
  advertiseAddress?: string;
  offload?: string;
  sessionTtl?: string;
  metricsPerTopic?: boolean;
  autorecovery?: string;
  autorecoveryGrace?: string;
  config?: string;
}

/** `sluice broker`: run one stateless broker until SIGTERM / SIGINT. */
export function registerBrokerCommand(program: Command): void {
  program
    .command('broker')
    .description('run a broker; settings: flags > SLUICE_BROKER_* env > --config file > defaults')
    .option('--metadata <url>', 'metadata store, e.g. etcd://127.0.0.1:2379/sluice/main')
    .option('--cluster <name>', 'cluster name (key prefix /sluice/<name> when the URL has no path)')
    .option('--port <port>', 'gRPC port (default 6650)')
    .option('--http-port <port>', 'HTTP port for /metrics, /healthz, /readyz (default 8080)')
    .option('--bind-host <host>', 'address to listen on (default 0.0.0.0)')
    .option('--advertise-address <host:port>', 'address clients and brokers use to reach this broker')
    .option('--offload <url>', 'cold tier: s3://bucket/prefix?endpoint=... or file:///dir')
    .option('--session-ttl <duration>', 'metadata session TTL, e.g. 10s')
    .option('--metrics-per-topic', 'label metrics per topic as well as per namespace (many series)')
    .option('--autorecovery <true|false>', 'run the autorecovery auditor in this broker (default true)')
    .option(
      '--autorecovery-grace <duration>',
      'how long a bookie may stay away before its data is re-replicated (default 5m)',
    )
    .option('--config <file>', 'JSON config file with any broker setting')
    .action(async (flags: BrokerFlags) => {
      let runtime: BrokerRuntime;
      try {
        const { config, ...rest } = flags;
        const cfg = loadConfig(brokerConfigSchema, {
          flags: rest as Record<string, unknown>,
          envPrefix: 'SLUICE_BROKER_',
          ...(config ? { file: config } : {}),
        });
        const metadata = await openMetadataStore(metadataUrlFor(cfg));
        try {
          runtime = await BrokerRuntime.start({
            metadata,
            port: cfg.port,
            httpPort: cfg.httpPort,
            bindHost: cfg.bindHost,
            ...(cfg.advertiseAddress ? { advertiseAddress: cfg.advertiseAddress } : {}),
            ...(cfg.offload ? { offloadUrl: cfg.offload } : {}),
            sessionTtlMs: cfg.sessionTtl,
            metricsPerTopic: cfg.metricsPerTopic,
            ...(cfg.autorecovery ? { autorecovery: { gracePeriodMs: cfg.autorecoveryGrace } } : {}),
            defaultPersistence: {
              ensembleSize: cfg.ensembleSize,
              writeQuorum: cfg.writeQuorum,
              ackQuorum: cfg.ackQuorum,
            },
          });
        } catch (err) {
          await metadata.close().catch(() => undefined);
          throw err;
        }
        const shutdownOnce = onSignals(async () => {
          await runtime.close();
          await metadata.close();
        });
        void shutdownOnce;
        process.stdout.write(
          `sluice broker listening on ${runtime.broker.address} (gRPC), HTTP on ${runtime.broker.httpAddress}\n`,
        );
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        process.stderr.write(`sluice broker: ${message}\n`);
        process.exit(err instanceof InvalidArgumentError ? 2 : 1);
      }
    });
}

/** Stop cleanly on the first SIGINT/SIGTERM; a second one exits at once. */
export function onSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (): void => {
    if (stopping) process.exit(1);
    stopping = true;
    stop().then(
      () => process.exit(0),
      (err: Error) => {
        process.stderr.write(`sluice: shutdown failed: ${err.message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}
