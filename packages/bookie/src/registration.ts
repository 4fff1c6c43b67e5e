import { randomUUID } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backoffDelay, FailedPreconditionError, type Logger, writeFileAtomic } from '@sluice/common';
import type { MetadataStore, Session } from '@sluice/metadata';

export const BOOKIES_AVAILABLE_PREFIX = 'bookies/available/';
export const BOOKIES_READONLY_PREFIX = 'bookies/readonly/';
export const BOOKIES_COOKIES_PREFIX = 'bookies/cookies/';

/** Who this bookie is: kept in its data dir (`bookie.json`) and, as a cookie, in metadata. */
export interface BookieIdentity {
  bookieId: string;
  /** Changes whenever a data dir is initialised: a wiped disk is a new instance. */
  instanceId: string;
  createdAt: number;
}

interface Cookie extends BookieIdentity {
  journalDir: string;
  ledgerDir: string;
}

/**
 * Load the identity from the data dir, or create a new bookie when the dir has
 * none. A data dir whose instance id disagrees with the cookie in metadata is
 * refused: it is another bookie's disk, or an old copy of this one.
 */
export async function ensureIdentity(
  store: MetadataStore,
  dirs: { dataDir: string; journalDir: string; ledgerDir: string },
  logger: Logger,
): Promise<BookieIdentity> {
  await mkdir(dirs.dataDir, { recursive: true });
  const path = join(dirs.dataDir, 'bookie.json');
  let local: BookieIdentity | undefined;
  try {
    local = JSON.parse(await readFile(path, 'utf8')) as BookieIdentity;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new FailedPreconditionError(
        `bookie identity file ${path} is unreadable (${(err as Error).message}); restore it or wipe the data dir to join as a new bookie`,
      );
    }
  }
  if (local) {
    const key = BOOKIES_COOKIES_PREFIX + local.bookieId;
    const stored = await store.get(key);
    if (stored) {
      const cookie = JSON.parse(stored.value.toString('utf8')) as Cookie;
      if (cookie.instanceId !== local.instanceId) {
        throw new FailedPreconditionError(
          `data dir ${dirs.dataDir} holds instance ${local.instanceId} of bookie ${local.bookieId}, but metadata (${key}) records instance ${cookie.instanceId}; ` +
            'this disk is stale or belongs to another bookie. Wipe the data dir to join as a new bookie, or restore the right disk',
        );
      }
    } else {
      logger.warn({ bookieId: local.bookieId }, 'no cookie in metadata for this bookie; writing it again');
      await store.put(key, Buffer.from(JSON.stringify({ ...local, ...dirs })), { createOnly: true });
    }
    return local;
  }
  const fresh: BookieIdentity = { bookieId: randomUUID(), instanceId: randomUUID(), createdAt: Date.now() };
  await store.put(
    BOOKIES_COOKIES_PREFIX + fresh.bookieId,
    Buffer.from(JSON.stringify({ ...fresh, ...dirs })),
    {
      createOnly: true,
    },
  );
  await writeFileAtomic(path, JSON.stringify(fresh));
  logger.info({ bookieId: fresh.bookieId }, 'initialised a new bookie in an empty data dir');
  return fresh;
}

/** Value of `bookies/available/<id>` and `bookies/readonly/<id>`. */
export interface RegistrationValue {
  bookieId: string;
  address: string;
  /** host:port of the add channel (absent when it is off: clients add over gRPC). */
  addAddress?: string;
  rack: string;
  readOnly: boolean;
  freeBytes: number;
  totalBytes: number;
  instanceId: string;
  startedAt: number;
}

export interface RegistrarOptions {
  store: MetadataStore;
  identity: BookieIdentity;
  sessionTtlMs: number;
  logger: Logger;
  /** Current values to publish (address, rack, state, capacity). */
  describe: () => Omit<RegistrationValue, 'bookieId' | 'instanceId' | 'startedAt'>;
  /** Capacity refreshes publish at most this often (default 30 s). */
  capacityRefreshMs?: number;
  /** ... and only when free bytes moved by at least this fraction of the disk (default 1%). */
  capacityChangeFraction?: number;
  now?: () => number;
}

const DEFAULT_CAPACITY_REFRESH_MS = 30_000;
const DEFAULT_CAPACITY_CHANGE_FRACTION = 0.01;

/**
 * Keeps the bookie's ephemeral registration on its metadata session, under
 * `available/` while writable and `readonly/` while read-only. A lost session
 * is replaced and the registration re-created, retrying with backoff.
 */
export class Registrar {
  private session: Session | undefined;
  private stopped = false;
  private readonly startedAt = Date.now();
  private publishing: Promise<void> = Promise.resolve();
  private retryTimer: NodeJS.Timeout | undefined;
  /** Free bytes and time of the last successful publish. */
  private published: { freeBytes: number; at: number } | undefined;
  private readonly now: () => number;
  /** The session on which the registration key was last written. */
  private registeredOn: Session | undefined;

  constructor(private readonly opts: RegistrarOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** True while the bookie holds a live metadata session. */
  get sessionUp(): boolean {
    return this.session !== undefined && !this.session.lost && !this.stopped;
  }

  /** True while the registration key (available/ or readonly/) exists on the live session. */
  get registered(): boolean {
    return this.sessionUp && this.registeredOn === this.session;
  }

  async start(): Promise<void> {
    await this.register();
  }

  /**
   * Create a session and register on it. A session whose registration fails
   * is revoked: left open, its keepalive would renew it until the process
   * exits, and each retry would leak another one.
   */
  private async register(): Promise<void> {
    const session = await this.opts.store.createSession(this.opts.sessionTtlMs);
    if (this.stopped) {
      // `stop` ran while the session was being created and could not close it.
      await session.close().catch(() => undefined);
      return;
    }
    this.session = session;
    session.onLost((err) => {
      if (this.stopped || this.session !== session) return;
      this.opts.logger.warn({ err }, 'metadata session lost; registering again');
      this.reconnect(0);
    });
    try {
      await this.publish();
    } catch (err) {
      if (this.session === session) this.session = undefined;
      await session.close().catch(() => undefined);
      throw err;
    }
  }

  private reconnect(attempt: number): void {
    if (this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.register().catch((err) => {
        this.opts.logger.warn({ err, attempt }, 'bookie registration failed; retrying');
        this.reconnect(attempt + 1);
      });
    }, backoffDelay(attempt));
  }

  /**
   * Re-publish the free space when it moved noticeably and the last publish
   * is old enough. Called on every disk check: placement wants a fresh
   * figure, but each publish is an etcd write, so small drifts wait.
   */
  refreshCapacity(): Promise<void> {
    const last = this.published;
    if (!last || !this.session || this.session.lost || this.stopped) return this.publishing;
    if (this.now() - last.at < (this.opts.capacityRefreshMs ?? DEFAULT_CAPACITY_REFRESH_MS))
      return this.publishing;
    const d = this.opts.describe();
    const minChange = d.totalBytes * (this.opts.capacityChangeFraction ?? DEFAULT_CAPACITY_CHANGE_FRACTION);
    if (Math.abs(d.freeBytes - last.freeBytes) < Math.max(1, minChange)) return this.publishing;
    return this.update();
  }

  /** Re-publish after a writable / read-only change (serialized). */
  update(): Promise<void> {
    this.publishing = this.publishing
      .then(() => this.publish())
      .catch((err) => {
        this.opts.logger.warn({ err }, 'could not update the bookie registration');
      });
    return this.publishing;
  }

  private async publish(): Promise<void> {
    const session = this.session;
    if (!session || session.lost || this.stopped) return;
    const d = this.opts.describe();
    const value: RegistrationValue = {
      bookieId: this.opts.identity.bookieId,
      instanceId: this.opts.identity.instanceId,
      startedAt: this.startedAt,
      ...d,
    };
    const id = this.opts.identity.bookieId;
    const [put, del] = d.readOnly
      ? [BOOKIES_READONLY_PREFIX + id, BOOKIES_AVAILABLE_PREFIX + id]
      : [BOOKIES_AVAILABLE_PREFIX + id, BOOKIES_READONLY_PREFIX + id];
    const stale = await this.opts.store.get(del);
    await this.opts.store.txn([
      ...(stale ? [{ op: 'delete' as const, key: del }] : []),
      { op: 'put', key: put, value: Buffer.from(JSON.stringify(value)), session },
    ]);
    this.published = { freeBytes: d.freeBytes, at: this.now() };
    this.registeredOn = session;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.publishing;
    await this.session?.close().catch(() => undefined);
  }
}
