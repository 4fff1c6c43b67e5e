import { InvalidArgumentError } from '@sluice/common';
import { MAX_ENTRY_BYTES } from '@sluice/ledger';

/**
 * Policies as stored in metadata (JSON) and carried by admin.proto's Policies
 * message (same field names). Namespace policies are complete once resolved
 * against the broker's defaults; topic policies hold only overrides.
 */
export interface PersistencePolicy {
  ensembleSize: number;
  writeQuorum: number;
  ackQuorum: number;
}

export interface RetentionPolicy {
  timeMs: number;
  sizeBytes: number;
}

export interface BacklogQuotaValue {
  limitBytes: number;
  policy: string;
}

export interface PublishRateValue {
  messagesPerSecond: number;
  bytesPerSecond: number;
}

export interface PolicyValues {
  persistence?: PersistencePolicy;
  retention?: RetentionPolicy;
  offloadThresholdBytes?: number;
  deduplicationEnabled?: boolean;
  messageTtlMs?: number;
  backlogQuota?: BacklogQuotaValue;
  maxMessageSize?: number;
  publishRate?: PublishRateValue;
  bundles?: number;
  maxDeliveryDelayMs?: number;
}

export type EffectivePolicies = Required<PolicyValues>;

export const DEFAULT_MAX_MESSAGE_SIZE = 5 * 1024 * 1024;
/**
 * Hard ceiling: a batch plus its envelope must fit one ledger entry
 * (`MAX_ENTRY_BYTES`, 5 MiB + 64 KiB), the 64 KiB left for the envelope.
 * A larger policy would accept batches the log then refuses.
 */
export const MAX_MESSAGE_SIZE_LIMIT = MAX_ENTRY_BYTES - 64 * 1024;
export const DEFAULT_BUNDLES = 4;

export function defaultPolicies(persistence: PersistencePolicy): EffectivePolicies {
  return {
    persistence: { ...persistence },
    retention: { timeMs: 0, sizeBytes: 0 },
    offloadThresholdBytes: -1,
    deduplicationEnabled: true,
    messageTtlMs: 0,
    backlogQuota: { limitBytes: -1, policy: 'BACKLOG_QUOTA_POLICY_PRODUCER_HOLD' },
    maxMessageSize: DEFAULT_MAX_MESSAGE_SIZE,
    publishRate: { messagesPerSecond: 0, bytesPerSecond: 0 },
    bundles: DEFAULT_BUNDLES,
    maxDeliveryDelayMs: 0,
  };
}

const KEYS: (keyof PolicyValues)[] = [
  'persistence',
  'retention',
  'offloadThresholdBytes',
  'deduplicationEnabled',
  'messageTtlMs',
  'backlogQuota',
  'maxMessageSize',
  'publishRate',
  'bundles',
  'maxDeliveryDelayMs',
];

/** Only the fields that are set (proto3 `optional` fields decode as undefined/null when absent). */
export function pickSetPolicies(input: unknown): PolicyValues {
  const out: Record<string, unknown> = {};
  if (!input || typeof input !== 'object') return out;
  const src = input as Record<string, unknown>;
  for (const k of KEYS) {
    const v = src[k];
    if (v !== undefined && v !== null) out[k] = typeof v === 'object' ? { ...(v as object) } : v;
  }
  return out as PolicyValues;
}

/** Layer policies: later layers override earlier ones field by field. */
export function mergePolicies<T extends PolicyValues>(base: T, ...layers: PolicyValues[]): T {
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const layer of layers) {
    for (const [k, v] of Object.entries(layer)) if (v !== undefined && v !== null) out[k] = v;
  }
  return out as T;
}

function int(v: unknown, what: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new InvalidArgumentError(
      `${what}=${String(v)} is invalid; it must be an integer from ${min} to ${max}`,
    );
  }
  return n;
}

/** Check a set of policy changes; throws InvalidArgumentError naming the bad field. */
export function validatePolicies(p: PolicyValues, opts: { allowBundles: boolean }): PolicyValues {
  if (p.persistence) {
    const e = int(p.persistence.ensembleSize, 'persistence.ensembleSize', 1, 64);
    const w = int(p.persistence.writeQuorum, 'persistence.writeQuorum', 1, 64);
    const a = int(p.persistence.ackQuorum, 'persistence.ackQuorum', 1, 64);
    if (!(e >= w && w >= a)) {
      throw new InvalidArgumentError(
        `persistence E=${e} Qw=${w} Qa=${a} is invalid; it needs ensemble >= write quorum >= ack quorum >= 1`,
      );
    }
  }
  if (p.retention) {
    int(p.retention.timeMs, 'retention.timeMs', -1);
    int(p.retention.sizeBytes, 'retention.sizeBytes', -1);
  }
  if (p.offloadThresholdBytes !== undefined) int(p.offloadThresholdBytes, 'offloadThresholdBytes', -1);
  if (p.messageTtlMs !== undefined) int(p.messageTtlMs, 'messageTtlMs', 0);
  if (p.maxMessageSize !== undefined) int(p.maxMessageSize, 'maxMessageSize', 1024, MAX_MESSAGE_SIZE_LIMIT);
  if (p.maxDeliveryDelayMs !== undefined) int(p.maxDeliveryDelayMs, 'maxDeliveryDelayMs', 0);
  if (p.backlogQuota) int(p.backlogQuota.limitBytes, 'backlogQuota.limitBytes', -1);
  if (p.publishRate) {
    int(p.publishRate.messagesPerSecond, 'publishRate.messagesPerSecond', 0);
    int(p.publishRate.bytesPerSecond, 'publishRate.bytesPerSecond', 0);
  }
  if (p.bundles !== undefined) {
    if (!opts.allowBundles) {
      throw new InvalidArgumentError('bundles can only be set when the namespace is created');
    }
    int(p.bundles, 'bundles', 1, 1024);
  }
  return p;
}
