import { AlreadyExistsError, BadVersionError } from '@sluice/common';
import { truncate } from './limits.js';
import type { TxnOp } from './metadata-store.js';

/** The conditions a txn op imposes, normalised for both stores. */
export interface Condition {
  key: string;
  /** 'absent': key must not exist; number: key must be at that mod revision (0 = absent). */
  expect: 'absent' | number;
  /** 'createOnly' fails with AlreadyExistsError; the others with BadVersionError. */
  kind: 'createOnly' | 'version';
}

export function conditionsOf(ops: readonly TxnOp[]): Condition[] {
  const out: Condition[] = [];
  for (const op of ops) {
    if (op.op === 'put' && op.createOnly) out.push({ key: op.key, expect: 'absent', kind: 'createOnly' });
    if (op.op !== 'check' && op.expectedVersion !== undefined) {
      out.push({ key: op.key, expect: op.expectedVersion, kind: 'version' });
    }
    if (op.op === 'check') out.push({ key: op.key, expect: op.expectedVersion, kind: 'version' });
  }
  return out;
}

/** The error for the first condition that `current` (key → mod revision, 0 = absent) violates. */
export function conditionFailure(
  conds: readonly Condition[],
  current: (key: string) => number,
): Error | undefined {
  for (const c of conds) {
    const v = current(c.key);
    if (c.kind === 'createOnly' && v !== 0) {
      return new AlreadyExistsError(
        `key "${truncate(c.key)}" already exists (version ${v}); read it, or write with expectedVersion`,
        { details: { key: c.key, version: String(v) } },
      );
    }
    if (c.kind === 'version' && typeof c.expect === 'number' && v !== c.expect) {
      const now = v === 0 ? 'does not exist' : `is at version ${v}`;
      return new BadVersionError(
        `key "${truncate(c.key)}" ${now}, expected version ${c.expect}; re-read it and retry`,
        { details: { key: c.key, version: String(v), expected: String(c.expect) } },
      );
    }
  }
  return undefined;
}
