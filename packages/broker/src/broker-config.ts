import { z, zDuration } from '@sluice/common';

/** Settings of `sluice broker` (flags > SLUICE_BROKER_* env > --config file > defaults). */
export const brokerConfigSchema = z.object({
  /** Metadata store URL, e.g. `etcd://127.0.0.1:2379/sluice/main`. */
  metadata: z
    .string({
      error:
        'a metadata URL is required (--metadata or SLUICE_BROKER_METADATA), e.g. etcd://127.0.0.1:2379/sluice/main',
    })
    .min(1, 'a metadata URL is required, e.g. etcd://127.0.0.1:2379/sluice/main'),
  /** Cluster name: selects the key prefix `/sluice/<cluster>` when the metadata URL has no path. */
  cluster: z
    .string()
    .regex(/^[A-Za-z0-9._-]+$/, 'use letters, digits, ".", "_" or "-"')
    .optional(),
  /** gRPC port (Lookup, Produce, Consume, Admin, health, reflection). 0 picks a free port. */
  port: z.coerce.number().int().min(0).max(65535).default(6650),
  /** HTTP port for /metrics, /healthz, /readyz. 0 picks a free port. */
  httpPort: z.coerce.number().int().min(0).max(65535).default(8080),
  /** Address to listen on. */
  bindHost: z.string().default('0.0.0.0'),
  /** host:port clients and other brokers dial (Kubernetes: the pod's stable name). Default: <hostname>:<port>. */
  advertiseAddress: z
    .string()
    .regex(/^[^:\s]+:\d+$/, 'use host:port')
    .optional(),
  /** Cold tier, `s3://bucket/prefix?endpoint=...` or `file:///dir`; unset disables offload. */
  offload: z.string().optional(),
  /** Metadata session TTL: how long a dead broker's bundles stay unavailable. Shorter moves faster, but a long GC pause can then cost ownership. */
  sessionTtl: zDuration.default(10_000),
  /** Label traffic, backlog and storage metrics with `topic` as well as `namespace`: one series per topic and subscription, costly in Prometheus with many topics. */
  metricsPerTopic: z
    .union([z.boolean(), z.enum(['true', 'false'])])
    .transform((v) => v === true || v === 'true')
    .default(false),
  /** Run the autorecovery auditor (one leader per cluster re-replicates the ledgers of bookies that are gone). */
  autorecovery: z
    .union([z.boolean(), z.enum(['true', 'false'])])
    .transform((v) => v === true || v === 'true')
    .default(true),
  /** How long a bookie must stay unregistered before its ledger copies are rebuilt elsewhere. Shorter heals sooner, but a bookie that is only restarting (rolling upgrade) gets copied needlessly. */
  autorecoveryGrace: zDuration.default(5 * 60_000),
  /** Persistence of namespaces created without one (ensemble size E). */
  ensembleSize: z.coerce.number().int().min(1).default(2),
  /** Copies of each entry (Qw). */
  writeQuorum: z.coerce.number().int().min(1).default(2),
  /** Copies fsynced before a send is acknowledged (Qa). 1 trades durability for latency. */
  ackQuorum: z.coerce.number().int().min(1).default(2),
});

export type BrokerConfig = z.infer<typeof brokerConfigSchema>;

/** The metadata URL with `/sluice/<cluster>` appended when the URL has no path of its own. */
export function metadataUrlFor(cfg: Pick<BrokerConfig, 'metadata' | 'cluster'>): string {
  if (!cfg.cluster) return cfg.metadata;
  const m = /^(etcd:\/\/[^/]+)\/?$/i.exec(cfg.metadata.trim());
  return m ? `${m[1]}/sluice/${cfg.cluster}` : cfg.metadata;
}
