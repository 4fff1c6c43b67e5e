import type { TxnOp } from '../metadata-store.js';

/** A key as a read after the write found it. */
export interface StoredKey {
  value: Buffer;
  /** etcd lease id; '0' for none. */
  lease: string;
  modRevision: number;
  createRevision: number;
}

export interface TxnOutcome {
  revision: number;
  /** Keys the txn deleted. */
  deleted: number;
}

/**
 * Whether the keys as they are now prove that a conditional txn of `ops` was
 * applied by an attempt whose answer was lost. Returns that txn's outcome, or
 * undefined when the state does not prove it.
 *
 * Proof needs every put to be bound to a session: a lease belongs to one
 * session of this process, so a key holding our value under our lease, written
 * at one revision with the others, was written by us. Equal values alone
 * prove nothing: two allocators that read the same counter write the same next
 * value, and only one of them may think it won. Deleted keys must be gone and
 * keys the txn only checked must still be at the expected version.
 *
 * A txn that only deletes has no written key to date it: its outcome carries
 * `readRevision`, the revision of the read, which is at or after the delete.
 */
export function appliedOutcome(
  ops: readonly TxnOp[],
  current: (key: string) => StoredKey | undefined,
  readRevision: number,
): TxnOutcome | undefined {
  const written = new Set(ops.filter((op) => op.op !== 'check').map((op) => op.key));
  let revision: number | undefined;
  let deleted = 0;
  for (const op of ops) {
    const kv = current(op.key);
    if (op.op === 'put') {
      if (!op.session || !kv || kv.lease !== op.session.id || !kv.value.equals(op.value)) return undefined;
      if (revision !== undefined && kv.modRevision !== revision) return undefined;
      revision = kv.modRevision;
      const created = op.createOnly === true || op.expectedVersion === 0;
      if (created && kv.createRevision !== kv.modRevision) return undefined;
      if (op.expectedVersion !== undefined && kv.modRevision <= op.expectedVersion) return undefined;
    } else if (op.op === 'delete') {
      if (kv) return undefined;
      if (op.expectedVersion !== undefined && op.expectedVersion > 0) deleted++;
    } else if (!written.has(op.key) && (kv?.modRevision ?? 0) !== op.expectedVersion) {
      return undefined;
    }
  }
  return { revision: revision ?? readRevision, deleted };
}
