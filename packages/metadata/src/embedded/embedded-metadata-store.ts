import {
  type Clock,
  ClosedError,
  InvalidArgumentError,
  type Logger,
  SessionLostError,
  silentLogger,
  systemClock,
} from '@sluice/common';
import { CompactedError, checkKey, checkPrefix, checkTxnOps, compareKeys } from '../limits.js';
import type {
  DeleteOptions,
  ListOptions,
  ListPage,
  MetadataStore,
  PutOptions,
  Session,
  TxnOp,
  TxnResult,
  Versioned,
  Watch,
  WatchEvent,
  WatchOptions,
} from '../metadata-store.js';
import { conditionFailure, conditionsOf } from '../ops.js';
import { EmbeddedLog, type LogRecord } from './embedded-log.js';
import { EmbeddedSession } from './embedded-session.js';
import { EmbeddedWatch } from './embedded-watch.js';

export interface EmbeddedMetadataStoreOptions {
  /** Directory holding the log and snapshot; created when missing. */
  dataDir: string;
  /** Revisions of change history kept to serve watch-from-revision (default 10000). */
  historyRevisions?: number;
  /** Log size that triggers a snapshot and a fresh log (default 16 MiB). */
  snapshotThresholdBytes?: number;
  clock?: Clock;
  logger?: Logger;
}

/** A committed txn whose record is not yet durable. */
interface Pending {
  revision: number;
  frame: Buffer;
  events: WatchEvent[];
}

interface Waiter {
  revision: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

interface Entry {
  value: Buffer;
  createRevision: number;
  modRevision: number;
  session?: EmbeddedSession;
}

/**
 * The metadata store of `sluice standalone`: etcd's semantics in one process.
 * Every committed txn is fdatasynced to an append-only log before it is
 * acknowledged; ephemeral keys live in memory only, so after a restart only
 * persistent keys remain (their owning sessions died with the process).
 *
 * A txn is validated and applied to memory at once, so txns serialize
 * trivially, but nothing that depends on it leaves the store before its
 * record is durable: the txn's own answer, watch events and every read wait
 * for the log to cover the revision they saw. The log write and fdatasync run
 * off the event loop, one at a time, each carrying every txn committed while
 * the previous one was in flight. A failed write or fdatasync stops the store:
 * memory is then ahead of the disk, and retrying an fdatasync after Linux
 * dropped the failed pages would claim durability it does not have.
 */
export class EmbeddedMetadataStore implements MetadataStore {
  private readonly entries = new Map<string, Entry>();
  /** Keys in etcd order (UTF-8 bytes), for ranged listing. */
  private readonly sorted: string[] = [];
  private rev: number;
  private readonly history: { revision: number; events: WatchEvent[] }[] = [];
  /** Lowest revision a watch can still start from. */
  private historyStart: number;
  private readonly watches = new Set<EmbeddedWatch>();
  private readonly sessions = new Map<string, EmbeddedSession>();
  private nextSessionId = 1;
  private closed = false;
  /** Txns applied to memory whose records are not yet durable, oldest first. */
  private pending: Pending[] = [];
  private readonly waiters: Waiter[] = [];
  /** Highest revision whose record is durable. */
  private durableRev: number;
  /** The running group-write loop, if any. */
  private writer: Promise<void> | undefined;
  /** Why the store stopped, after a failed log write. */
  private failure: Error | undefined;
  private readonly historyRevisions: number;
  private readonly clock: Clock;
  private readonly logger: Logger;

  private constructor(
    private readonly log: EmbeddedLog,
    revision: number,
    opts: EmbeddedMetadataStoreOptions,
  ) {
    this.rev = revision;
    this.durableRev = revision;
    this.historyStart = revision + 1;
    this.historyRevisions = opts.historyRevisions ?? 10_000;
    this.clock = opts.clock ?? systemClock;
    this.logger = opts.logger ?? silentLogger;
  }

  static async open(opts: EmbeddedMetadataStoreOptions): Promise<EmbeddedMetadataStore> {
    if (!opts.dataDir) throw new InvalidArgumentError('embedded metadata store needs a data dir');
    const logger = opts.logger ?? silentLogger;
    const { log, state } = EmbeddedLog.open(opts.dataDir, {
      snapshotThresholdBytes: opts.snapshotThresholdBytes ?? 16 * 1024 * 1024,
      logger,
    });
    const store = new EmbeddedMetadataStore(log, state.revision, opts);
    for (const k of state.keys) {
      store.entries.set(k.key, {
        value: k.value,
        createRevision: k.createRevision,
        modRevision: k.modRevision,
      });
      store.sorted.push(k.key);
    }
    store.sorted.sort(compareKeys);
    logger.info(
      { dataDir: opts.dataDir, revision: state.revision, keys: state.keys.length },
      'embedded metadata store opened',
    );
    return store;
  }

  async get(key: string): Promise<Versioned | undefined> {
    this.checkOpen();
    checkKey(key);
    const e = this.entries.get(key);
    const v = e ? toVersioned(key, e, false) : undefined;
    await this.durable(this.rev);
    return v;
  }

  async put(key: string, value: Buffer, opts: PutOptions = {}): Promise<number> {
    const { revision } = await this.txn([{ op: 'put', key, value, ...opts }]);
    return revision;
  }

  async delete(key: string, opts: DeleteOptions = {}): Promise<boolean> {
    this.checkOpen();
    checkKey(key);
    const existed = this.entries.has(key);
    await this.txn([{ op: 'delete', key, ...opts }]);
    return existed;
  }

  async list(prefix: string, opts: ListOptions = {}): Promise<ListPage> {
    this.checkOpen();
    checkPrefix(prefix);
    const limit = opts.limit ?? 1000;
    if (!Number.isSafeInteger(limit) || limit <= 0) {
      throw new InvalidArgumentError(`list limit must be a positive integer, got ${String(opts.limit)}`);
    }
    let i = lowerBound(
      this.sorted,
      opts.after !== undefined && compareKeys(opts.after, prefix) >= 0 ? opts.after : prefix,
    );
    if (opts.after !== undefined && this.sorted[i] === opts.after) i++;
    const items: Versioned[] = [];
    for (; i < this.sorted.length && items.length < limit; i++) {
      const key = this.sorted[i] as string;
      if (!key.startsWith(prefix)) break;
      items.push(toVersioned(key, this.entries.get(key) as Entry, opts.keysOnly === true));
    }
    const more = i < this.sorted.length && (this.sorted[i] as string).startsWith(prefix);
    const last = items[items.length - 1];
    await this.durable(this.rev);
    return more && last ? { items, next: last.key } : { items };
  }

  async listAll(prefix: string, opts: Omit<ListOptions, 'after'> = {}): Promise<Versioned[]> {
    const out: Versioned[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.list(prefix, { ...opts, ...(after === undefined ? {} : { after }) });
      out.push(...page.items);
      if (page.next === undefined) return out;
      after = page.next;
    }
  }

  async txn(ops: TxnOp[]): Promise<TxnResult> {
    this.checkOpen();
    checkTxnOps(ops);
    const revision = this.commit(ops);
    await this.durable(revision);
    return { revision };
  }

  async watch(prefix: string, listener: (ev: WatchEvent) => void, opts: WatchOptions = {}): Promise<Watch> {
    this.checkOpen();
    checkPrefix(prefix);
    const from = opts.fromRevision ?? this.rev + 1;
    if (!Number.isSafeInteger(from) || from < 1) {
      throw new InvalidArgumentError(
        `watch fromRevision must be a positive integer, got ${String(opts.fromRevision)}`,
      );
    }
    if (from < this.historyStart) throw new CompactedError(from, this.historyStart);
    const w = new EmbeddedWatch(prefix, from, listener, opts.onError, () => this.watches.delete(w));
    // Replay retained (durable) history first; the pending txns' events follow
    // in order once durable.
    for (const h of this.history) {
      if (h.revision >= from) w.push(h.events);
    }
    this.watches.add(w);
    await this.durable(from - 1);
    return w;
  }

  async revision(): Promise<number> {
    this.checkOpen();
    const rev = this.rev;
    await this.durable(rev);
    return rev;
  }

  async createSession(ttlMs: number): Promise<Session> {
    this.checkOpen();
    if (!Number.isFinite(ttlMs) || ttlMs < 1000) {
      throw new InvalidArgumentError(
        `session TTL must be at least 1000 ms (etcd leases count whole seconds), got ${ttlMs}`,
      );
    }
    const id = String(this.nextSessionId++);
    const s = new EmbeddedSession(id, ttlMs, this.clock, (session, err) => this.endSession(session, err));
    this.sessions.set(id, s);
    return s;
  }

  /** End a session as if its lease expired: its ephemeral keys go and `onLost` fires. */
  expireSession(id: string): void {
    this.sessions.get(id)?.expire(new SessionLostError(`session ${id} expired`));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const s of [...this.sessions.values()]) s.stop();
    this.sessions.clear();
    // Txns already committed finish their write (and a snapshot its rename).
    while (this.writer) await this.writer;
    for (const w of [...this.watches]) w.fail(new ClosedError('metadata store closed'));
    this.watches.clear();
    this.log.close();
  }

  /** Called by a session on close() (err undefined) or expiry. */
  private endSession(session: EmbeddedSession, err: Error | undefined): void {
    this.sessions.delete(session.id);
    if (this.closed) return;
    const ops: TxnOp[] = [];
    for (const key of session.keys) {
      if (this.entries.get(key)?.session === session) ops.push({ op: 'delete', key });
    }
    session.keys.clear();
    if (ops.length > 0) this.commit(ops);
    if (err) this.logger.warn({ session: session.id, keys: ops.length }, 'metadata session lost');
  }

  /**
   * Validate, apply to memory and queue the record. Synchronous so txns
   * serialize trivially; callers wait for `durable(revision)` before anything
   * that depends on the txn leaves the store.
   */
  private commit(ops: readonly TxnOp[]): number {
    for (const op of ops) {
      if (op.op === 'put' && op.session) {
        const s = op.session;
        if (!(s instanceof EmbeddedSession) || this.sessions.get(s.id) !== s) {
          throw new SessionLostError(
            `session ${s.id} is ${s.lost ? 'lost' : 'closed or not of this store'}; create a new session`,
          );
        }
      }
    }
    const failure = conditionFailure(conditionsOf(ops), (key) => this.entries.get(key)?.modRevision ?? 0);
    if (failure) throw failure;
    const changes = ops.filter((op) => op.op === 'put' || (op.op === 'delete' && this.entries.has(op.key)));
    if (changes.length === 0) return this.rev;
    const revision = this.rev + 1;
    const rec: LogRecord = { revision, puts: [], deletes: [] };
    for (const op of changes) {
      if (op.op === 'put' && !op.session) {
        rec.puts.push({
          key: op.key,
          value: op.value,
          createRevision: this.entries.get(op.key)?.createRevision ?? revision,
        });
      } else {
        // An ephemeral put must also erase any persistent value of the key on replay.
        rec.deletes.push(op.key);
      }
    }
    const frame = EmbeddedLog.encode(rec);
    this.rev = revision;
    const events: WatchEvent[] = [];
    for (const op of changes) {
      if (op.op === 'put') {
        const prev = this.entries.get(op.key);
        if (!prev) insertSorted(this.sorted, op.key);
        if (prev?.session && prev.session !== op.session) prev.session.keys.delete(op.key);
        const session = op.session as EmbeddedSession | undefined;
        session?.keys.add(op.key);
        const value = Buffer.from(op.value);
        this.entries.set(op.key, {
          value,
          createRevision: prev?.createRevision ?? revision,
          modRevision: revision,
          ...(session ? { session } : {}),
        });
        events.push({ type: 'put', key: op.key, value, version: revision });
      } else {
        const prev = this.entries.get(op.key);
        prev?.session?.keys.delete(op.key);
        this.entries.delete(op.key);
        removeSorted(this.sorted, op.key);
        events.push({ type: 'delete', key: op.key, version: revision });
      }
    }
    this.pending.push({ revision, frame, events });
    this.writeNext();
    return revision;
  }

  /** Resolves once every txn up to `revision` is durable. */
  private durable(revision: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (revision <= this.durableRev) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ revision, resolve, reject }));
  }

  /** Start the group-write loop unless it runs already. */
  private writeNext(): void {
    if (this.writer || this.failure || this.pending.length === 0) return;
    this.writer = this.writeLoop().finally(() => {
      this.writer = undefined;
      this.writeNext();
    });
  }

  /** Append what is pending, one group at a time, snapshotting when the log is long. */
  private async writeLoop(): Promise<void> {
    while (this.pending.length > 0 && !this.failure) {
      const batch = this.pending;
      this.pending = [];
      try {
        await this.log.append(batch.map((p) => p.frame));
        this.written(batch);
        if (this.log.needsSnapshot) await this.snapshot();
      } catch (err) {
        this.fail(err as Error);
      }
    }
  }

  /** A group is durable: publish its events, answer whoever waited for it. */
  private written(batch: Pending[]): void {
    for (const p of batch) {
      this.history.push({ revision: p.revision, events: p.events });
      for (const w of this.watches) w.push(p.events);
    }
    this.durableRev = (batch[batch.length - 1] as Pending).revision;
    while (this.history.length > this.historyRevisions) {
      this.history.shift();
      this.historyStart = this.history[0]?.revision ?? this.durableRev + 1;
    }
    // Reads wait for the newest revision and may sit past this group.
    const rest: Waiter[] = [];
    for (const w of this.waiters.splice(0)) {
      if (w.revision <= this.durableRev) w.resolve();
      else rest.push(w);
    }
    this.waiters.push(...rest);
  }

  /** A log write failed: memory is ahead of the disk, so the store stops. */
  private fail(err: Error): void {
    const failure = new ClosedError(
      `metadata store stopped: its log write failed (${err.message}); restart to recover from the log`,
    );
    this.failure = failure;
    this.logger.error({ err }, 'metadata log write failed; the store stops');
    for (const w of this.waiters.splice(0)) w.reject(failure);
    for (const w of [...this.watches]) w.fail(failure);
    this.watches.clear();
  }

  /**
   * Snapshot every persistent key as of the newest applied revision. Txns not
   * yet in the log are covered by it too; they are still appended after it
   * (replay skips them), and answered once they are.
   */
  private snapshot(): Promise<void> {
    const keys = [];
    for (const [key, e] of this.entries) {
      if (!e.session)
        keys.push({ key, value: e.value, createRevision: e.createRevision, modRevision: e.modRevision });
    }
    return this.log.snapshot(this.rev, keys);
  }

  private checkOpen(): void {
    if (this.failure) throw this.failure;
    if (this.closed) throw new ClosedError('metadata store is closed');
  }
}

function toVersioned(key: string, e: Entry, keysOnly: boolean): Versioned {
  const v: Versioned = {
    key,
    value: keysOnly ? Buffer.alloc(0) : Buffer.from(e.value),
    version: e.modRevision,
    createRevision: e.createRevision,
  };
  if (e.session) v.ephemeral = true;
  return v;
}

function lowerBound(arr: readonly string[], key: string): number {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareKeys(arr[mid] as string, key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function insertSorted(arr: string[], key: string): void {
  arr.splice(lowerBound(arr, key), 0, key);
}

function removeSorted(arr: string[], key: string): void {
  const i = lowerBound(arr, key);
  if (arr[i] === key) arr.splice(i, 1);
}
