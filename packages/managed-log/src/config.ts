import { InvalidArgumentError } from '@sluice/common';
import type { ManagedLogConfig } from './api.js';

/**
 * Defaults follow Pulsar's managed ledger where it has one. Every setting is
 * documented in docs/managed-log.md; the ones trading safety for speed say so.
 */
export const DEFAULT_MANAGED_LOG_CONFIG: ManagedLogConfig = {
  ensembleSize: 2,
  writeQuorum: 2,
  ackQuorum: 2,
  maxEntriesPerLedger: 50_000,
  maxBytesPerLedger: 256 * 1024 * 1024,
  maxLedgerAgeMs: 4 * 60 * 60 * 1000,
  minLedgerAgeMs: 10_000,
  retentionTimeMs: 0,
  retentionSizeBytes: 0,
  offloadThresholdBytes: -1,
  offloadAgeMs: -1,
  offloadDeletionLagMs: 4 * 60 * 60 * 1000,
  cacheBytes: 64 * 1024 * 1024,
  readBatchEntries: 100,
  readAheadCacheBytes: 32 * 1024 * 1024,
  ackFlushDelayMs: 100,
  cursorLedgerMaxEntries: 1000,
  maxPendingAppends: 50_000,
  maintenanceIntervalMs: 60_000,
};

const nonNegative: (keyof ManagedLogConfig)[] = [
  'maxLedgerAgeMs',
  'minLedgerAgeMs',
  'offloadDeletionLagMs',
  'cacheBytes',
  'readAheadCacheBytes',
  'ackFlushDelayMs',
];
const positive: (keyof ManagedLogConfig)[] = [
  'ensembleSize',
  'writeQuorum',
  'ackQuorum',
  'maxEntriesPerLedger',
  'maxBytesPerLedger',
  'readBatchEntries',
  'cursorLedgerMaxEntries',
  'maxPendingAppends',
  'maintenanceIntervalMs',
];
const minusOneOrMore: (keyof ManagedLogConfig)[] = [
  'retentionTimeMs',
  'retentionSizeBytes',
  'offloadThresholdBytes',
  'offloadAgeMs',
];

export function resolveConfig(...layers: (Partial<ManagedLogConfig> | undefined)[]): ManagedLogConfig {
  const cfg: ManagedLogConfig = { ...DEFAULT_MANAGED_LOG_CONFIG };
  for (const layer of layers) {
    if (!layer) continue;
    for (const [k, v] of Object.entries(layer)) {
      if (v !== undefined) (cfg as unknown as Record<string, number>)[k] = v as number;
    }
  }
  for (const key of Object.keys(cfg) as (keyof ManagedLogConfig)[]) {
    const v = cfg[key];
    if (!Number.isFinite(v)) {
      throw new InvalidArgumentError(`managed log setting ${key}=${v} is not a number`);
    }
    if (positive.includes(key) && v < 1) {
      throw new InvalidArgumentError(`managed log setting ${key}=${v} must be at least 1`);
    }
    if (nonNegative.includes(key) && v < 0) {
      throw new InvalidArgumentError(`managed log setting ${key}=${v} must be 0 or more`);
    }
    if (minusOneOrMore.includes(key) && v < -1) {
      throw new InvalidArgumentError(`managed log setting ${key}=${v} must be -1 (unlimited/never) or more`);
    }
  }
  if (!(cfg.ensembleSize >= cfg.writeQuorum && cfg.writeQuorum >= cfg.ackQuorum)) {
    throw new InvalidArgumentError(
      `persistence E=${cfg.ensembleSize} Qw=${cfg.writeQuorum} Qa=${cfg.ackQuorum} is invalid; it needs E >= Qw >= Qa`,
    );
  }
  return cfg;
}
