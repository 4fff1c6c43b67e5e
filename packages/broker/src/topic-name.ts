import { InvalidArgumentError } from '@sluice/common';

/**
 * Topic names: `persistent://tenant/namespace/topic`, or the short form
 * `topic` meaning `persistent://public/default/topic`. Segments use the same
 * alphabet as managed-log names so that every valid topic maps to a log.
 */
export interface TopicName {
  tenant: string;
  namespace: string;
  /** The topic's own segment (e.g. `orders-partition-2`). */
  local: string;
  /** `persistent://tenant/namespace/local`. */
  full: string;
  /** `tenant/namespace`. */
  namespaceName: string;
  /** `tenant/namespace/local`: the managed log's name and the metadata key suffix. */
  path: string;
  /** Partition index when `local` ends in `-partition-<i>`; -1 otherwise. */
  partition: number;
  /** Name of the partitioned topic this partition belongs to (itself when not a partition). */
  base: string;
}

export interface NamespaceName {
  tenant: string;
  namespace: string;
  /** `tenant/namespace`. */
  name: string;
}

const SEGMENT = /^[A-Za-z0-9._=-][A-Za-z0-9._=:-]*$/;
const MAX_SEGMENT = 200;
const SCHEME = 'persistent://';
const PARTITION = /-partition-(\d+)$/;

export function checkSegment(value: string, what: string, whole: string): string {
  if (!value) {
    throw new InvalidArgumentError(
      `${what} in '${whole}' is empty; use tenant/namespace/topic, e.g. public/default/orders`,
    );
  }
  if (value.length > MAX_SEGMENT || !SEGMENT.test(value)) {
    throw new InvalidArgumentError(
      `${what} '${value}' in '${whole}' is invalid; use at most ${MAX_SEGMENT} letters, digits, '.', '_', '-', '=' or ':' (not leading ':')`,
    );
  }
  return value;
}

export function parseTopicName(text: string): TopicName {
  if (typeof text !== 'string' || text.trim() === '') {
    throw new InvalidArgumentError(
      'topic name is empty; use persistent://tenant/namespace/topic or a short name',
    );
  }
  let rest = text.trim();
  if (rest.includes('://')) {
    if (!rest.startsWith(SCHEME)) {
      throw new InvalidArgumentError(
        `topic '${text}' has an unsupported scheme; only persistent:// topics exist (e.g. persistent://public/default/orders)`,
      );
    }
    rest = rest.slice(SCHEME.length);
  }
  const parts = rest.split('/');
  if (parts.length === 1) parts.unshift('public', 'default');
  if (parts.length !== 3) {
    throw new InvalidArgumentError(
      `topic '${text}' has ${parts.length} segments; use tenant/namespace/topic or a short name without '/'`,
    );
  }
  const [tenant, namespace, local] = parts.map((p, i) =>
    checkSegment(p, ['tenant', 'namespace', 'topic'][i]!, text),
  ) as [string, string, string];
  const m = PARTITION.exec(local);
  const partition = m ? Number(m[1]) : -1;
  const baseLocal = m ? local.slice(0, m.index) : local;
  return {
    tenant,
    namespace,
    local,
    full: `${SCHEME}${tenant}/${namespace}/${local}`,
    namespaceName: `${tenant}/${namespace}`,
    path: `${tenant}/${namespace}/${local}`,
    partition: Number.isSafeInteger(partition) ? partition : -1,
    base: `${SCHEME}${tenant}/${namespace}/${baseLocal}`,
  };
}

export function partitionName(topic: TopicName, index: number): TopicName {
  return parseTopicName(`${topic.full}-partition-${index}`);
}

export function parseNamespaceName(text: string): NamespaceName {
  const parts = typeof text === 'string' ? text.trim().split('/') : [];
  if (parts.length !== 2) {
    throw new InvalidArgumentError(
      `namespace '${text}' is invalid; use tenant/namespace, e.g. public/default`,
    );
  }
  const tenant = checkSegment(parts[0]!, 'tenant', text);
  const namespace = checkSegment(parts[1]!, 'namespace', text);
  return { tenant, namespace, name: `${tenant}/${namespace}` };
}

export function checkTenantName(text: string): string {
  return checkSegment(typeof text === 'string' ? text.trim() : '', 'tenant', String(text));
}

export function checkSubscriptionName(text: string): string {
  if (
    typeof text !== 'string' ||
    text.length === 0 ||
    text.length > 256 ||
    text.includes('/') ||
    text.startsWith('__')
  ) {
    throw new InvalidArgumentError(
      `subscription name '${text}' is invalid; use 1-256 characters without '/' and not starting with '__'`,
    );
  }
  return text;
}
