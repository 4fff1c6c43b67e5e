/**
 * The coordination layer every Sluice component shares. Two implementations
 * with identical semantics: etcd (clusters) and embedded (standalone).
 *
 * Versions are etcd mod revisions: a key's version changes on every write and
 * never restarts when a key is deleted and re-created, so a stale
 * compare-and-swap can never succeed by accident.
 */

/** A stored value with its version (mod revision) and create revision. */
export interface Versioned {
  key: string;
  value: Buffer;
  /** Mod revision of the last write to the key. */
  version: number;
  /** Revision at which the key was (last) created. */
  createRevision: number;
  /** True when the key is ephemeral (bound to a session); undefined for persistent keys. */
  ephemeral?: boolean;
}

export interface PutOptions {
  /** Fail with AlreadyExistsError when the key exists. */
  createOnly?: boolean;
  /** Fail with BadVersionError unless the key's current version equals this. */
  expectedVersion?: number;
  /** Bind the key to this session: it disappears when the session ends. */
  session?: Session;
}

export interface DeleteOptions {
  /** Fail with BadVersionError unless the key's current version equals this. */
  expectedVersion?: number;
}

export interface ListOptions {
  /** Start after this key (exclusive), for pagination. */
  after?: string;
  /** Max keys per page (default 1000). */
  limit?: number;
  /** Return keys only; values are empty buffers. */
  keysOnly?: boolean;
}

export interface ListPage {
  items: Versioned[];
  /** Pass as `after` to fetch the next page; undefined when done. */
  next?: string;
}

/** One operation of an atomic transaction. */
export type TxnOp =
  | {
      op: 'put';
      key: string;
      value: Buffer;
      createOnly?: boolean;
      expectedVersion?: number;
      session?: Session;
    }
  | { op: 'delete'; key: string; expectedVersion?: number }
  /** A pure check: the key must be at this version (0 = must not exist). */
  | { op: 'check'; key: string; expectedVersion: number };

export interface TxnResult {
  /** Revision of the transaction; each put key now has this version. */
  revision: number;
}

/** `version` is the revision of the change (for a put, the key's new version). */
export type WatchEvent =
  | { type: 'put'; key: string; value: Buffer; version: number }
  | { type: 'delete'; key: string; version: number };

export interface WatchOptions {
  /** Deliver every change with revision >= this (no gaps). Default: changes after now. */
  fromRevision?: number;
  /**
   * Called once when the watch ends for good: the requested history was
   * compacted (CompactedError) or the store was closed. Transient disconnects
   * are not errors; the watch resumes from the last delivered revision.
   */
  onError?: (err: Error) => void;
}

export interface Watch {
  close(): Promise<void>;
}

/**
 * A session is a lease kept alive in the background. Ephemeral keys live as
 * long as the session. When the lease cannot be renewed before its TTL ends
 * the session is lost: `onLost` listeners fire once and the session is dead
 * (create a new one).
 */
export interface Session {
  readonly id: string;
  readonly ttlMs: number;
  readonly lost: boolean;
  onLost(listener: (err: Error) => void): void;
  /** Revoke the lease: every ephemeral key of the session goes at once. */
  close(): Promise<void>;
}

export interface MetadataStore {
  get(key: string): Promise<Versioned | undefined>;
  /** Returns the new version. */
  put(key: string, value: Buffer, opts?: PutOptions): Promise<number>;
  /** Returns true when a key was deleted. */
  delete(key: string, opts?: DeleteOptions): Promise<boolean>;
  list(prefix: string, opts?: ListOptions): Promise<ListPage>;
  /** Every key under the prefix (follows pagination). */
  listAll(prefix: string, opts?: Omit<ListOptions, 'after'>): Promise<Versioned[]>;
  /** All-or-nothing: a failed condition fails the whole txn with BadVersionError/AlreadyExistsError. */
  txn(ops: TxnOp[]): Promise<TxnResult>;
  /** Delivers every change under the prefix in revision order; resumes after reconnects without gaps. */
  watch(prefix: string, listener: (ev: WatchEvent) => void, opts?: WatchOptions): Promise<Watch>;
  /** The store's current revision. */
  revision(): Promise<number>;
  createSession(ttlMs: number): Promise<Session>;
  close(): Promise<void>;
}

/** Leader election over a session's lease (no extra lease per campaign). */
export interface LeaderElection {
  /** Resolves once this participant is leader. Rejects if the session is lost or `resign` is called. */
  campaign(value: Buffer): Promise<void>;
  readonly isLeader: boolean;
  /** Current leader's value, if any. */
  leader(): Promise<Buffer | undefined>;
  /** Step down (or stop campaigning). */
  resign(): Promise<void>;
}
