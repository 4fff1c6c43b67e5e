import { InvalidArgumentError, OutOfRangeError, type SluiceErrorOptions } from '@sluice/common';
import type { TxnOp } from './metadata-store.js';

/**
 * etcd refuses requests over `--max-request-bytes` (1.5 MiB by default). Both
 * stores check the same budget up front so that standalone never accepts what
 * a cluster would refuse, and the caller gets a readable error instead of a
 * gRPC transport failure. 16 KiB are kept for the request's own framing.
 */
export const DEFAULT_MAX_REQUEST_BYTES = 1.5 * 1024 * 1024;
const REQUEST_OVERHEAD_BYTES = 16 * 1024;

/** etcd's default `--max-txn-ops`. */
export const DEFAULT_MAX_TXN_OPS = 128;

/** Thrown when a watch asks for history that was compacted away. */
export class CompactedError extends OutOfRangeError {
  constructor(
    readonly requestedRevision: number,
    /** Oldest revision still available, 0 when the store did not say. */
    readonly compactRevision: number,
    options?: SluiceErrorOptions,
  ) {
    super(
      `revision ${requestedRevision} was compacted${compactRevision > 0 ? ` (oldest available is ${compactRevision})` : ''}; ` +
        're-read the current state with list() and watch from its revision',
      options,
    );
  }
}

export function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) {
    throw new InvalidArgumentError('metadata key is empty; pass a non-empty key such as "ledgers/42"');
  }
}

export function checkPrefix(prefix: string): void {
  if (typeof prefix !== 'string') throw new InvalidArgumentError('metadata prefix must be a string');
}

/** Bytes a put or txn would send, checked against etcd's request size limit. */
export function checkRequestSize(ops: readonly TxnOp[], maxRequestBytes = DEFAULT_MAX_REQUEST_BYTES): void {
  let total = 0;
  for (const op of ops) {
    total += Buffer.byteLength(op.key) * (op.op === 'put' ? 2 : 3);
    if (op.op === 'put') total += op.value.length;
  }
  const budget = maxRequestBytes - REQUEST_OVERHEAD_BYTES;
  if (total > budget) {
    const what =
      ops.length === 1
        ? `value for key "${truncate(ops[0]?.key ?? '')}"`
        : `transaction of ${ops.length} operations`;
    throw new InvalidArgumentError(
      `${what} is ${total} bytes, over the metadata request limit of ${budget} bytes ` +
        `(etcd --max-request-bytes ${maxRequestBytes}); store large data elsewhere (e.g. a ledger) and keep a reference`,
    );
  }
}

export function checkTxnOps(ops: readonly TxnOp[], maxTxnOps = DEFAULT_MAX_TXN_OPS): void {
  if (!Array.isArray(ops)) throw new InvalidArgumentError('txn expects an array of operations');
  if (ops.length > maxTxnOps) {
    throw new InvalidArgumentError(
      `transaction has ${ops.length} operations, over the limit of ${maxTxnOps} (etcd --max-txn-ops); split it`,
    );
  }
  const seen = new Set<string>();
  for (const op of ops) {
    checkKey(op.key);
    const v = op.expectedVersion;
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) {
      throw new InvalidArgumentError(
        `expectedVersion for key "${truncate(op.key)}" must be a non-negative integer, got ${String(v)}`,
      );
    }
    if (op.op === 'put' && !Buffer.isBuffer(op.value)) {
      throw new InvalidArgumentError(`value for key "${truncate(op.key)}" must be a Buffer`);
    }
    if (op.op !== 'check') {
      // etcd rejects a txn that writes one key twice ("duplicate key given in txn request").
      if (seen.has(op.key)) {
        throw new InvalidArgumentError(
          `transaction writes key "${truncate(op.key)}" more than once; merge the operations`,
        );
      }
      seen.add(op.key);
    }
  }
  checkRequestSize(ops);
}

export function truncate(s: string, max = 80): string {
  return s.length <= max ? s : `${s.slice(0, max)}…`;
}

/**
 * Order of keys as etcd sorts them: by UTF-8 bytes. JavaScript compares UTF-16
 * code units, which differs for characters above U+FFFF vs U+E000..U+FFFF;
 * shifting the code units fixes that without encoding.
 */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return utf8Rank(x) - utf8Rank(y);
  }
  return a.length - b.length;
}

function utf8Rank(c: number): number {
  if (c >= 0xd800 && c <= 0xdfff) return c + 0x2000;
  if (c >= 0xe000) return c - 0x800;
  return c;
}
