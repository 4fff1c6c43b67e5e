/**
 * Autorecovery. One auditor per cluster (leader election on a metadata
 * session: its own, or the one of the process it runs in) periodically
 * lists the registered bookies and every ledger. A bookie referenced by a
 * segment that has been unregistered for longer than the grace period is
 * gone for good: each fragment it held is copied from
 * the surviving replicas to a replacement chosen by the placement policy
 * (recovery adds), and only then is the replacement CASed into the
 * segment. Killed midway, the metadata still names the old bookie, the
 * next auditor does the work again, and the orphan copies are harmless.
 *
 * The last segment of a ledger that is not CLOSED is left alone: its writer
 * (or a recovery) owns it and replaces failed bookies itself.
 */
import {
  asSluiceError,
  type BookieId,
  backoffDelay,
  counter,
  type EntryId,
  type Logger,
  NotFoundError,
  type Registry,
  SessionLostError,
  silentLogger,
} from '@sluice/common';
import { type MetadataStore, type Session, SessionLeaderElection } from '@sluice/metadata';
import type { LedgerMetadata } from './api.js';
import type { BookieClientPool } from './bookie-client.js';
import { type BookieDirectory, MetadataBookieDirectory } from './bookie-directory.js';
import { EntryFetcher } from './entry-fetcher.js';
import { GrpcBookieClientPool } from './grpc-bookie-client.js';
import { decodeMetadata, LEDGERS_PREFIX, LedgerMetadataStore } from './ledger-metadata-store.js';
import { type PlacementPolicy, RackAwarePlacementPolicy } from './placement-policy.js';

export const AUDITOR_ELECTION_PREFIX = 'autorecovery/auditor/';

export interface AuditorOptions {
  metadata: MetadataStore;
  directory?: BookieDirectory;
  pool?: BookieClientPool;
  placement?: PlacementPolicy;
  /** How long a bookie must stay unregistered before its copies are rebuilt elsewhere. */
  gracePeriodMs?: number;
  /** Time between audits. */
  auditIntervalMs?: number;
  /** TTL of the auditor's metadata session (leadership ends this long after a crash). Unused with `sharedSession`. */
  sessionTtlMs?: number;
  /**
   * Campaign on the owner's session instead of one of the auditor's own: one
   * lease (one etcd keepalive stream) per process. Resolves to the owner's
   * live session, waiting while the owner reconnects; asked again each time
   * that session is lost. The auditor never creates nor closes a session
   * then, and close() only withdraws its election key, so close the auditor
   * before the session. Unset: the auditor keeps a session of its own.
   */
  sharedSession?: () => Promise<Session>;
  /** Identity published as the leader's value. */
  name?: string;
  logger?: Logger;
  registry?: Registry;
}

export interface AuditReport {
  ledgersChecked: number;
  /** Bookies unregistered for longer than the grace period. */
  goneBookies: BookieId[];
  fragmentsReplicated: number;
  entriesCopied: number;
  /** Fragments that could not be repaired this round (retried next round). */
  failures: number;
}

export class Auditor {
  private readonly ledgers: LedgerMetadataStore;
  private readonly directory: BookieDirectory;
  private readonly pool: BookieClientPool;
  private readonly ownsPool: boolean;
  private readonly placement: PlacementPolicy;
  private readonly fetcher: EntryFetcher;
  private readonly logger: Logger;
  private readonly absentSince = new Map<BookieId, number>();
  private session: Session | undefined;
  private election: SessionLeaderElection | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private reopening: Promise<void> | undefined;
  private auditing = false;
  private readonly wakers = new Set<() => void>();
  private closed = false;
  private readonly grace: number;
  private readonly interval: number;
  private readonly copied?: () => void;

  constructor(private readonly opts: AuditorOptions) {
    this.ledgers = new LedgerMetadataStore(opts.metadata);
    this.directory = opts.directory ?? new MetadataBookieDirectory(opts.metadata, 0);
    this.ownsPool = !opts.pool;
    this.pool = opts.pool ?? new GrpcBookieClientPool(this.directory);
    this.placement = opts.placement ?? new RackAwarePlacementPolicy();
    this.logger = opts.logger ?? silentLogger;
    this.fetcher = new EntryFetcher(this.pool, this.logger, { speculativeTimeoutMs: 1000 });
    this.grace = opts.gracePeriodMs ?? 5 * 60_000;
    this.interval = opts.auditIntervalMs ?? 60_000;
    if (opts.registry) {
      const c = counter(
        opts.registry,
        'sluice_autorecovery_entries_copied_total',
        'Entries re-replicated by autorecovery',
      );
      this.copied = () => c.inc();
    }
  }

  get isLeader(): boolean {
    return this.election?.isLeader ?? false;
  }

  /**
   * Campaign for leadership in the background; audit periodically while
   * leader. A lost session (etcd partition, long pause) ends leadership; the
   * auditor then campaigns again on a new session (its own, or the next one
   * `sharedSession` gives), for as long as it runs.
   */
  async start(): Promise<void> {
    await this.openSession();
  }

  private async openSession(): Promise<void> {
    const shared = this.opts.sharedSession;
    const session = shared
      ? await this.unlessClosed(shared())
      : await this.opts.metadata.createSession(this.opts.sessionTtlMs ?? 10_000);
    if (!session) return;
    if (this.closed) {
      if (!shared) await session.close().catch(() => undefined);
      return;
    }
    // onLost never fires for a session already lost: ask for the next one instead.
    if (session.lost) throw new SessionLostError(`session ${session.id} was lost before the auditor used it`);
    this.session = session;
    const election = new SessionLeaderElection(this.opts.metadata, session, AUDITOR_ELECTION_PREFIX);
    this.election = election;
    session.onLost((err) => {
      if (this.closed) return;
      this.logger.warn({ err }, 'auditor session lost; leadership ends, campaigning again on a new session');
      clearTimeout(this.timer);
      this.timer = undefined;
      this.reopening ??= this.reopen().finally(() => {
        this.reopening = undefined;
      });
    });
    this.running = this.campaign(session, election);
  }

  private async reopen(): Promise<void> {
    if (!this.opts.sharedSession) await this.session?.close().catch(() => undefined);
    for (let attempt = 0; !this.closed; attempt++) {
      try {
        await this.openSession();
        return;
      } catch (err) {
        this.logger.warn({ err }, 'auditor cannot get a metadata session; retrying');
        await this.pause(backoffDelay(attempt, { minDelayMs: 200, maxDelayMs: 10_000 }));
      }
    }
  }

  private async campaign(session: Session, election: SessionLeaderElection): Promise<void> {
    const name = Buffer.from(this.opts.name ?? `auditor-${process.pid}`);
    for (let attempt = 0; !this.closed && !session.lost; attempt++) {
      try {
        await election.campaign(name);
        this.schedule(0);
        return;
      } catch (err) {
        // A lost session is handled by its onLost (a new session campaigns).
        if (this.closed || session.lost) return;
        this.logger.warn({ err }, 'auditor campaign failed; campaigning again');
        await this.pause(backoffDelay(attempt, { minDelayMs: 200, maxDelayMs: 10_000 }));
      }
    }
  }

  /**
   * `p`, or undefined as soon as close() is called: the owner of a shared
   * session may be reconnecting for as long as etcd is away, and close() must
   * not wait for that.
   */
  private unlessClosed<T>(p: Promise<T>): Promise<T | undefined> {
    return new Promise((resolve, reject) => {
      const wake = () => {
        this.wakers.delete(wake);
        resolve(undefined);
      };
      if (this.closed) wake();
      else this.wakers.add(wake);
      p.then(
        (v) => {
          this.wakers.delete(wake);
          resolve(v);
        },
        (err: unknown) => {
          this.wakers.delete(wake);
          reject(err);
        },
      );
    });
  }

  /** A sleep that close() cuts short. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(t);
        this.wakers.delete(wake);
        resolve();
      };
      const t = setTimeout(wake, ms);
      this.wakers.add(wake);
    });
  }

  private schedule(delay: number): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      // Not leader (yet again) or a pass still runs: keep ticking; the
      // timer is the only thing that starts audits.
      if (!this.isLeader || this.auditing) {
        this.schedule(this.interval);
        return;
      }
      this.auditing = true;
      this.runOnce()
        .then(
          (r) => {
            if (r.fragmentsReplicated > 0 || r.failures > 0) this.logger.info(r, 'audit finished');
          },
          (err: unknown) => {
            this.logger.warn({ err }, 'audit failed; retrying next round');
          },
        )
        .finally(() => {
          this.auditing = false;
          if (!this.timer) this.schedule(this.interval);
        });
    }, delay);
  }

  /** One audit pass. */
  async runOnce(): Promise<AuditReport> {
    const report: AuditReport = {
      ledgersChecked: 0,
      goneBookies: [],
      fragmentsReplicated: 0,
      entriesCopied: 0,
      failures: 0,
    };
    if (this.pool instanceof GrpcBookieClientPool) await this.pool.refresh();
    const registered = new Set((await this.directory.list()).map((b) => b.bookieId));
    const all = await this.opts.metadata.listAll(LEDGERS_PREFIX);
    const now = Date.now();
    const referenced = new Set<BookieId>();
    for (const item of all) {
      for (const s of decodeMetadata(item.value).segments) for (const b of s.bookies) referenced.add(b);
    }
    for (const b of [...this.absentSince.keys()])
      if (registered.has(b) || !referenced.has(b)) this.absentSince.delete(b);
    const gone = new Set<BookieId>();
    for (const b of referenced) {
      if (registered.has(b)) continue;
      const since = this.absentSince.get(b) ?? now;
      this.absentSince.set(b, since);
      if (now - since >= this.grace) gone.add(b);
    }
    report.goneBookies = [...gone];
    for (const item of all) {
      if (this.closed) break;
      report.ledgersChecked++;
      const m = decodeMetadata(item.value);
      for (let si = 0; si < m.segments.length; si++) {
        const seg = m.segments[si] as LedgerMetadata['segments'][number];
        const isTail = si === m.segments.length - 1;
        if (isTail && m.state !== 'CLOSED') continue;
        for (let idx = 0; idx < seg.bookies.length; idx++) {
          if (!gone.has(seg.bookies[idx] as BookieId)) continue;
          try {
            report.entriesCopied += await this.replicateFragment(m.ledgerId, si, idx, gone);
            report.fragmentsReplicated++;
          } catch (err) {
            if (err instanceof NotFoundError) break;
            report.failures++;
            this.logger.warn(
              {
                ledgerId: m.ledgerId,
                segment: si,
                bookie: seg.bookies[idx],
                err: asSluiceError(err).message,
              },
              'fragment re-replication failed; will retry',
            );
          }
        }
      }
    }
    return report;
  }

  /** Copy the entries position `idx` of segment `si` holds to a replacement, then CAS it in. */
  private async replicateFragment(
    ledgerId: number,
    si: number,
    idx: number,
    gone: Set<BookieId>,
  ): Promise<number> {
    const { metadata: m } = await this.ledgers.readOrThrow(ledgerId);
    const seg = m.segments[si];
    if (!seg || !gone.has(seg.bookies[idx] as BookieId)) return 0;
    const lost = seg.bookies[idx] as BookieId;
    const next = m.segments[si + 1];
    const last: EntryId = next ? next.firstEntryId - 1 : m.state === 'CLOSED' ? m.lastEntryId : -1;
    const replacement = this.placement.replaceBookie(seg.bookies, idx, await this.directory.list(), gone);
    const ids: EntryId[] = [];
    const E = seg.bookies.length;
    for (let e = seg.firstEntryId; e <= last; e++) {
      if ((((idx - e) % E) + E) % E < m.writeQuorum) ids.push(e);
    }
    const target = this.pool.get(replacement);
    const batch = 64;
    for (let i = 0; i < ids.length; i += batch) {
      // Settle the whole batch before giving up: a failed pass must not leave
      // copies still in flight when the next pass (or a new leader) starts.
      const settled = await Promise.allSettled(
        ids.slice(i, i + batch).map(async (e) => {
          const entry = await this.fetcher.readEntry(m, e);
          const r = await target.add(entry, true);
          if (r.status !== 'OK') {
            throw new Error(
              `bookie ${replacement} refused entry ${ledgerId}:${e}: ${r.status} ${r.message ?? ''}`,
            );
          }
          this.copied?.();
        }),
      );
      const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    }
    await this.ledgers.update(ledgerId, (cur) => {
      const s = cur.segments[si];
      if (!s || s.firstEntryId !== seg.firstEntryId || s.bookies[idx] !== lost) return undefined;
      const segments = cur.segments.map((x, i) =>
        i === si ? { ...x, bookies: x.bookies.map((b, j) => (j === idx ? replacement : b)) } : x,
      );
      return { ...cur, segments };
    });
    this.logger.info(
      { ledgerId, segment: si, lost, replacement, entries: ids.length },
      'fragment re-replicated',
    );
    return ids.length;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    for (const wake of [...this.wakers]) wake();
    await this.reopening;
    await this.election?.resign().catch(() => {});
    await this.running;
    if (this.opts.sharedSession) await this.dropElectionKey();
    else await this.session?.close().catch(() => {});
    if (this.ownsPool) await this.pool.close();
  }

  /**
   * resign() shrugs off a failed delete, which closing a session of our own
   * makes up for. A shared session lives on, and with it a leftover key that
   * keeps this process the leader: delete it outright (the key is
   * `<prefix><sessionId>`, nobody else's), once no campaign can re-create it.
   */
  private async dropElectionKey(): Promise<void> {
    const session = this.session;
    if (!session || session.lost) return;
    await this.opts.metadata.delete(`${AUDITOR_ELECTION_PREFIX}${session.id}`).catch((err: unknown) => {
      this.logger.warn(
        { err },
        'cannot delete the auditor election key; it goes when the shared session ends',
      );
    });
  }
}
