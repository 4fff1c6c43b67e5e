import {
  BadVersionError,
  ClosedError,
  InvalidArgumentError,
  type Logger,
  SessionLostError,
  silentLogger,
} from '@sluice/common';
import { handleWhen, noop, retry } from 'cockatiel';
import { Etcd3, type ICompare, type IKeyValue, type IRequestOp } from 'etcd3';
import { CompactedError, checkKey, checkPrefix, checkTxnOps } from '../limits.js';
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
import { mapEtcdError } from './etcd-errors.js';
import { KeySpace } from './etcd-keys.js';
import { neverReachedEtcd, retryEtcdCall } from './etcd-retry.js';
import { EtcdSession } from './etcd-session.js';
import { appliedOutcome, type StoredKey, type TxnOutcome } from './etcd-txn-outcome.js';
import { EtcdWatch } from './etcd-watch.js';

export const DEFAULT_CLUSTER_PREFIX = '/sluice/default';

export interface EtcdMetadataStoreOptions {
  /** `host:port` of each etcd member. */
  endpoints: string[];
  /** Cluster prefix every key lives under (default `/sluice/default`). */
  prefix?: string;
  /**
   * Deadline of every unary call (default 5000 ms). Bounds how long a caller
   * waits when etcd is unreachable; too short fails calls during an etcd
   * leader election (typically ~1 s).
   */
  callTimeoutMs?: number;
  logger?: Logger;
}

/** The MetadataStore on a real etcd cluster (v3 API). */
export class EtcdMetadataStore implements MetadataStore {
  private readonly client: Etcd3;
  private readonly keys: KeySpace;
  private readonly timeoutMs: number;
  /** Calls per request in all: one per member. */
  private readonly attempts: number;
  private readonly logger: Logger;
  private readonly endpointList: string;
  private readonly sessions = new Set<EtcdSession>();
  private readonly watches = new Set<EtcdWatch>();
  private closed = false;

  constructor(opts: EtcdMetadataStoreOptions) {
    if (!Array.isArray(opts.endpoints) || opts.endpoints.length === 0) {
      throw new InvalidArgumentError('etcd metadata store needs at least one endpoint (host:port)');
    }
    const prefix = opts.prefix ?? DEFAULT_CLUSTER_PREFIX;
    if (!prefix.startsWith('/')) {
      throw new InvalidArgumentError(`cluster prefix "${prefix}" must start with "/", e.g. /sluice/default`);
    }
    this.timeoutMs = opts.callTimeoutMs ?? 5000;
    this.attempts = opts.endpoints.length;
    this.logger = opts.logger ?? silentLogger;
    this.endpointList = opts.endpoints.join(',');
    this.keys = new KeySpace(prefix);
    const timeout = this.timeoutMs;
    this.client = new Etcd3({
      hosts: opts.endpoints.map((e) => (/^https?:\/\//.test(e) ? e : `http://${e}`)),
      dialTimeout: timeout,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
      faultHandling: {
        // No circuit breaker: it would keep refusing calls for seconds after
        // etcd is back. A call that never reached its member moves on to the
        // next one; every other failure goes back to `call` (see etcd-retry.ts).
        host: () => noop,
        global:
          opts.endpoints.length > 1
            ? retry(handleWhen(neverReachedEtcd), { maxAttempts: opts.endpoints.length - 1 })
            : noop,
      },
    });
  }

  /** The cluster prefix with a trailing slash. */
  get namespace(): string {
    return this.keys.namespace;
  }

  async get(key: string): Promise<Versioned | undefined> {
    this.checkOpen();
    checkKey(key);
    const res = await this.call('get', () => this.client.kv.range({ key: this.keys.key(key) }));
    const kv = res.kvs[0];
    return kv ? this.toVersioned(kv, false) : undefined;
  }

  async put(key: string, value: Buffer, opts: PutOptions = {}): Promise<number> {
    const { revision } = await this.txn([{ op: 'put', key, value, ...opts }]);
    return revision;
  }

  async delete(key: string, opts: DeleteOptions = {}): Promise<boolean> {
    this.checkOpen();
    const { deleted } = await this.runTxn([{ op: 'delete', key, ...opts }]);
    return deleted > 0;
  }

  async list(prefix: string, opts: ListOptions = {}): Promise<ListPage> {
    this.checkOpen();
    checkPrefix(prefix);
    const limit = opts.limit ?? 1000;
    if (!Number.isSafeInteger(limit) || limit <= 0) {
      throw new InvalidArgumentError(`list limit must be a positive integer, got ${String(opts.limit)}`);
    }
    const { key, range_end } = this.keys.range(prefix);
    const start = opts.after?.startsWith(prefix)
      ? Buffer.concat([this.keys.key(opts.after), Buffer.from([0])])
      : key;
    const res = await this.call('list', () =>
      this.client.kv.range({ key: start, range_end, limit, keys_only: opts.keysOnly === true }),
    );
    const items = res.kvs.map((kv) => this.toVersioned(kv, opts.keysOnly === true));
    const last = items[items.length - 1];
    return res.more && last ? { items, next: last.key } : { items };
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
    const { revision } = await this.runTxn(ops);
    return { revision };
  }

  async watch(prefix: string, listener: (ev: WatchEvent) => void, opts: WatchOptions = {}): Promise<Watch> {
    this.checkOpen();
    checkPrefix(prefix);
    if (
      opts.fromRevision !== undefined &&
      (!Number.isSafeInteger(opts.fromRevision) || opts.fromRevision < 1)
    ) {
      throw new InvalidArgumentError(
        `watch fromRevision must be a positive integer, got ${String(opts.fromRevision)}`,
      );
    }
    // Pin "now" to a revision so that a reconnect before the first event
    // still resumes from the right place.
    const current = await this.revision();
    const from = opts.fromRevision ?? current + 1;
    // etcd first confirms a watch on compacted history and cancels it only
    // afterwards; probing the history makes watch() itself fail instead.
    if (from <= current) await this.checkNotCompacted(prefix, from);
    const w = new EtcdWatch(
      this.client.watchClient,
      this.keys,
      prefix,
      from,
      listener,
      opts.onError,
      this.logger,
      (x) => this.watches.delete(x),
    );
    this.watches.add(w);
    await w.start(this.timeoutMs);
    return w;
  }

  async revision(): Promise<number> {
    this.checkOpen();
    const res = await this.call('revision', () =>
      this.client.kv.range({ ...this.keys.range(''), count_only: true }),
    );
    return Number(res.header.revision);
  }

  async createSession(ttlMs: number): Promise<Session> {
    this.checkOpen();
    if (!Number.isFinite(ttlMs) || ttlMs < 1000) {
      throw new InvalidArgumentError(
        `session TTL must be at least 1000 ms (etcd leases count whole seconds), got ${ttlMs}`,
      );
    }
    const ttlSec = Math.ceil(ttlMs / 1000);
    const sentAt = Date.now();
    // Retried like a read: a grant whose answer was lost leaves an unused
    // lease that expires after its TTL.
    const res = await this.call('create session', () => this.client.leaseClient.leaseGrant({ TTL: ttlSec }));
    const session = new EtcdSession(
      res.ID,
      ttlMs,
      sentAt,
      Number(res.TTL),
      this.client.leaseClient,
      (id) => this.revokeLease(id),
      this.logger,
    );
    this.sessions.add(session);
    session.onLost(() => this.sessions.delete(session));
    return session;
  }

  /**
   * Stops watches and keepalives and closes the connection. Sessions still
   * open are not revoked (etcd3's close never does either): their keys expire
   * by TTL. Close sessions first for an immediate clean exit.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of [...this.watches]) w.fail(new ClosedError('metadata store closed'));
    for (const s of this.sessions) s.detach();
    this.sessions.clear();
    this.client.close();
  }

  private async checkNotCompacted(prefix: string, revision: number): Promise<void> {
    try {
      await this.client.kv.range({ ...this.keys.range(prefix), revision, count_only: true });
    } catch (err) {
      if (err instanceof Error && err.message.includes('has been compacted')) {
        throw new CompactedError(revision, 0, { cause: err });
      }
      throw mapEtcdError(err, 'watch', this.endpointList, this.timeoutMs);
    }
  }

  private async revokeLease(id: string): Promise<void> {
    await this.call('close session', () =>
      this.client.leaseClient.leaseRevoke({ ID: id }).catch((err: unknown) => {
        if (err instanceof Error && err.message.includes('requested lease not found')) return undefined;
        throw err;
      }),
    );
  }

  private async runTxn(ops: TxnOp[]): Promise<TxnOutcome> {
    checkTxnOps(ops);
    for (const op of ops) {
      if (op.op === 'put' && op.session) {
        const s = op.session;
        if (!(s instanceof EtcdSession) || !this.sessions.has(s)) {
          throw new SessionLostError(
            `session ${s.id} is ${s.lost ? 'lost' : 'closed or not of this store'}; create a new session`,
          );
        }
      }
    }
    const conds = conditionsOf(ops);
    const compare: ICompare[] = conds.map((c) =>
      c.kind === 'createOnly'
        ? { key: this.keys.key(c.key), target: 'Create', result: 'Equal', create_revision: 0 }
        : {
            key: this.keys.key(c.key),
            target: 'Mod',
            result: 'Equal',
            mod_revision: c.expect === 'absent' ? 0 : c.expect,
          },
    );
    const success: IRequestOp[] = [];
    for (const op of ops) {
      if (op.op === 'put') {
        success.push({
          request_put: {
            key: this.keys.key(op.key),
            value: op.value,
            ...(op.session ? { lease: op.session.id } : {}),
          },
        });
      } else if (op.op === 'delete') {
        success.push({ request_delete_range: { key: this.keys.key(op.key) } });
      }
    }
    // On failure read the compared keys back so the error can name the culprit.
    const condKeys = [...new Set(conds.map((c) => c.key))];
    const failure: IRequestOp[] = condKeys.map((k) => ({
      request_range: { key: this.keys.key(k), keys_only: true },
    }));
    const attempt = async (): Promise<TxnOutcome> => {
      const res = await this.client.kv.txn({ compare, success, failure });
      if (!res.succeeded) {
        const current = new Map<string, number>();
        res.responses.forEach((r, i) => {
          const kv = r.response_range?.kvs[0];
          current.set(condKeys[i] as string, kv ? Number(kv.mod_revision) : 0);
        });
        throw (
          conditionFailure(conds, (k) => current.get(k) ?? 0) ??
          new BadVersionError(
            'a transaction condition failed (a key changed concurrently); re-read and retry',
          )
        );
      }
      let deleted = 0;
      for (const r of res.responses) deleted += Number(r.response_delete_range?.deleted ?? 0);
      return { revision: Number(res.header.revision), deleted };
    };
    return this.call('txn', attempt, conds.length > 0 ? () => this.appliedTxn(ops) : undefined);
  }

  /** After an ambiguous failure: the outcome of `ops` if the keys prove it was applied. */
  private async appliedTxn(ops: TxnOp[]): Promise<TxnOutcome | undefined> {
    const keys = [...new Set(ops.map((op) => op.key))];
    // One read txn: all keys from the same revision.
    const res = await retryEtcdCall(
      () =>
        this.client.kv.txn({
          compare: [],
          success: keys.map((k) => ({ request_range: { key: this.keys.key(k) } })),
          failure: [],
        }),
      { what: 'txn', attempts: this.attempts },
    );
    const current = new Map<string, StoredKey>();
    res.responses.forEach((r, i) => {
      const kv = r.response_range?.kvs[0];
      if (!kv) return;
      current.set(keys[i] as string, {
        value: kv.value,
        lease: kv.lease,
        modRevision: Number(kv.mod_revision),
        createRevision: Number(kv.create_revision),
      });
    });
    return appliedOutcome(ops, (k) => current.get(k), Number(res.header.revision));
  }

  /**
   * One request to etcd with the retries etcd-retry.ts allows. Conditional
   * writes pass `verify`; without it a request is retried as a read or an
   * unconditional write, which must be harmless to apply twice.
   */
  private async call<T>(
    what: string,
    fn: () => Promise<T>,
    verify?: () => Promise<T | undefined>,
  ): Promise<T> {
    try {
      return await retryEtcdCall(fn, { what, attempts: this.attempts, ...(verify ? { verify } : {}) });
    } catch (err) {
      throw mapEtcdError(err, what, this.endpointList, this.timeoutMs);
    }
  }

  private toVersioned(kv: IKeyValue, keysOnly: boolean): Versioned {
    const v: Versioned = {
      key: this.keys.unkey(kv.key),
      value: keysOnly ? Buffer.alloc(0) : kv.value,
      version: Number(kv.mod_revision),
      createRevision: Number(kv.create_revision),
    };
    if (kv.lease && kv.lease !== '0') v.ephemeral = true;
    return v;
  }

  private checkOpen(): void {
    if (this.closed) throw new ClosedError('metadata store is closed');
  }
}
