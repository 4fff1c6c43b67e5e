import {
  BadVersionError,
  comparePositions,
  formatPosition,
  type Logger,
  type Position,
  UnavailableError,
} from '@sluice/common';
import type { Cursor, ManagedLog } from '@sluice/managed-log';
import type { MetadataStore } from '@sluice/metadata';
import { decodeEnvelope } from './entry-envelope.js';
import { dedupKey } from './metadata-keys.js';

/** Cursor that keeps entries after the last dedup snapshot from being trimmed. */
export const DEDUP_CURSOR = '__dedup';

interface Snapshot {
  /** Every entry up to and including this position is reflected in `producers`. */
  position: Position;
  producers: Record<string, number>;
}

/**
 * A duplicate's `position` resolves once the original is stored (undefined
 * when it was stored too long ago to remember where) and rejects when the
 * original write failed or cannot be matched: then nothing is confirmed.
 */
export type DedupVerdict =
  | { duplicate: false }
  | { duplicate: true; position: Promise<Position | undefined> };

/** Receipts of recent sends kept per producer, so a retried send gets the original id. */
const RECENT_PER_PRODUCER = 2048;
/** Snapshot after this many stored entries; recovery scans at most this many (plus in-flight). */
const SNAPSHOT_EVERY_ENTRIES = 1000;
const SCAN_CHUNK = 500;
/**
 * Compare-and-swap attempts of one snapshot. Each lost one re-reads the
 * stored snapshot; only one older than ours (a stale owner's late write) is
 * retried, so more than a few losses in a row means heavy contention: give up
 * until the next snapshot.
 */
const SNAPSHOT_CAS_ATTEMPTS = 3;
/**
 * A producer name unseen this long (and not connected) is forgotten, as in
 * Pulsar: the state stays bounded, at the cost that a producer coming back
 * after that long with old sequence ids is not deduplicated.
 */
export const DEDUP_PRODUCER_IDLE_MS = 6 * 60 * 60 * 1000;

/**
 * Producer deduplication (DESIGN §6): a send whose first sequence id is not
 * above the highest one accepted for its producer name is a duplicate and is
 * stored once. The highest *stored* ids are snapshotted to metadata at a log
 * position; recovery loads the snapshot and replays the envelopes written
 * after it, so the state survives a SIGKILL of the owner.
 */
export class Deduplication {
  /** Highest sequence id accepted (in flight or stored), per producer. */
  private readonly pushed = new Map<string, number>();
  /** Highest sequence id durably stored, per producer. */
  private readonly persisted = new Map<string, number>();
  private readonly recent = new Map<string, Map<number, Promise<Position | undefined>>>();
  /** Sends being written, per producer: first sequence id → highest. */
  private readonly inFlight = new Map<string, Map<number, number>>();
  /** Last time each producer sent or was recovered, for forgetting idle ones. */
  private readonly lastActive = new Map<string, number>();
  private entriesSinceSnapshot = 0;
  private snapshotting: Promise<void> | undefined;
  private lastStored: Position | undefined;
  /** Metadata version of the snapshot as this instance last read or wrote it (0: none stored). */
  private version = 0;
  /**
   * Set once the stored snapshot is found at or after ours, or deleted: another
   * broker owns the topic (or it was deleted), so this instance must neither
   * replace that snapshot with an older one nor ack its cursor any further.
   */
  private stale = false;
  /** Snapshot writes run one at a time: two at once would fail each other's compare-and-swap. */
  private writing: Promise<void> = Promise.resolve();

  private constructor(
    private readonly store: MetadataStore,
    private readonly path: string,
    private readonly cursor: Cursor,
    private readonly logger: Logger,
  ) {}

  static async recover(
    store: MetadataStore,
    log: ManagedLog,
    path: string,
    logger: Logger,
  ): Promise<Deduplication> {
    // A bookmark of the last snapshot: it never reads the tail, so it must
    // not keep up to a snapshot interval of entries in the tail cache (that
    // kept every entry for ~0.2 s under load, long enough to reach V8's old
    // generation, whose buffers only a full collection frees).
    const cursor = await log.openCursor(DEDUP_CURSOR, 'earliest', { holdsTailCache: false });
    const d = new Deduplication(store, path, cursor, logger);
    const raw = await store.get(dedupKey(path));
    let from = log.firstPosition();
    if (raw) {
      const snap = JSON.parse(raw.value.toString('utf8')) as Snapshot;
      for (const [name, seq] of Object.entries(snap.producers)) {
        d.pushed.set(name, seq);
        d.persisted.set(name, seq);
      }
      const after = log.nextPosition(snap.position);
      // Nothing after the snapshot: the snapshot is the whole state.
      if (!after) from = undefined;
      else if (!from || comparePositions(after, from) > 0) from = after;
      d.lastStored = snap.position;
      d.version = raw.version;
    }
    const last = log.lastPosition();
    let scanned = 0;
    while (from && last && comparePositions(from, last) <= 0) {
      const entries = await log.read(from, SCAN_CHUNK);
      if (entries.length === 0) break;
      for (const e of entries) {
        const env = decodeEnvelope(e.payload);
        const highest = env.firstSequenceId + env.count - 1;
        if (highest > (d.persisted.get(env.producerName) ?? -1)) {
          d.pushed.set(env.producerName, highest);
          d.persisted.set(env.producerName, highest);
        }
        d.remember(env.producerName, env.firstSequenceId, Promise.resolve(e.position));
        d.lastStored = e.position;
      }
      scanned += entries.length;
      from = log.nextPosition(entries[entries.length - 1]!.position);
    }
    const now = Date.now();
    for (const name of d.persisted.keys()) d.lastActive.set(name, now);
    d.entriesSinceSnapshot = scanned;
    logger.debug({ topic: path, scanned, producers: d.persisted.size }, 'deduplication state recovered');
    return d;
  }

  lastSequenceId(producer: string): number {
    return this.pushed.get(producer) ?? -1;
  }

  /**
   * Decide before appending; a new send is recorded as in flight and must be
   * handed to `track` (or `failed`) right away. A duplicate is confirmed only
   * through a stored position or a sequence id at or below the stored one.
   */
  check(producer: string, firstSequenceId: number, count: number): DedupVerdict {
    this.lastActive.set(producer, Date.now());
    const highest = this.pushed.get(producer) ?? -1;
    if (firstSequenceId > highest) {
      const last = firstSequenceId + count - 1;
      this.pushed.set(producer, last);
      let m = this.inFlight.get(producer);
      if (!m) {
        m = new Map();
        this.inFlight.set(producer, m);
      }
      m.set(firstSequenceId, last);
      return { duplicate: false };
    }
    const known = this.recent.get(producer)?.get(firstSequenceId);
    if (known) return { duplicate: true, position: known };
    if (firstSequenceId <= (this.persisted.get(producer) ?? -1)) {
      return { duplicate: true, position: Promise.resolve(undefined) };
    }
    // Inside a batch still being written (or a gap left by a failed one): neither stored nor safe to write out of order.
    return {
      duplicate: true,
      position: Promise.reject(
        new UnavailableError(
          `sequence id ${firstSequenceId} of producer '${producer}' overlaps sends still being written; resend once they are answered`,
        ),
      ),
    };
  }

  /**
   * Follow the write of a send `check` accepted. The returned promise settles
   * after the state reflects the outcome, so a retry waiting on it can check again.
   */
  track(
    producer: string,
    firstSequenceId: number,
    count: number,
    write: Promise<Position>,
  ): Promise<Position> {
    const tracked: Promise<Position> = write.then(
      (position) => {
        this.stored(producer, firstSequenceId, count, position);
        return position;
      },
      (err: unknown) => {
        const m = this.recent.get(producer);
        if (m?.get(firstSequenceId) === tracked) m.delete(firstSequenceId);
        this.failed(producer, firstSequenceId);
        throw err;
      },
    );
    this.remember(producer, firstSequenceId, tracked);
    return tracked;
  }

  private stored(producer: string, firstSequenceId: number, count: number, position: Position): void {
    const highest = firstSequenceId + count - 1;
    this.inFlight.get(producer)?.delete(firstSequenceId);
    if (highest > (this.persisted.get(producer) ?? -1)) this.persisted.set(producer, highest);
    if (highest > (this.pushed.get(producer) ?? -1)) this.pushed.set(producer, highest);
    if (!this.lastStored || comparePositions(position, this.lastStored) > 0) this.lastStored = position;
    if (++this.entriesSinceSnapshot >= SNAPSHOT_EVERY_ENTRIES && !this.snapshotting && !this.stale) {
      this.snapshotting = this.snapshot()
        .catch((err) =>
          this.logger.warn({ err, topic: this.path }, 'deduplication snapshot failed; will retry'),
        )
        .finally(() => {
          this.snapshotting = undefined;
        });
    }
  }

  /**
   * The send starting at `firstSequenceId` was not stored, so it may be sent
   * again: the accepted high mark falls back to what is stored or still being
   * written, never below a send that may yet be stored.
   */
  failed(producer: string, firstSequenceId: number): void {
    const m = this.inFlight.get(producer);
    m?.delete(firstSequenceId);
    let highest = this.persisted.get(producer) ?? -1;
    for (const h of m?.values() ?? []) highest = Math.max(highest, h);
    if (highest < 0) this.pushed.delete(producer);
    else this.pushed.set(producer, highest);
  }

  /** Forget producers that are not connected and have been idle `idleMs`; returns how many. */
  forgetIdle(
    connected: (producer: string) => boolean,
    now = Date.now(),
    idleMs = DEDUP_PRODUCER_IDLE_MS,
  ): number {
    let n = 0;
    for (const [name, at] of [...this.lastActive]) {
      if (now - at < idleMs || connected(name) || (this.inFlight.get(name)?.size ?? 0) > 0) continue;
      this.lastActive.delete(name);
      this.pushed.delete(name);
      this.persisted.delete(name);
      this.recent.delete(name);
      this.inFlight.delete(name);
      n++;
    }
    return n;
  }

  /** Producer names the state holds (for tests and metrics). */
  producerCount(): number {
    return this.lastActive.size;
  }

  /**
   * Persist the stored state (also on a clean close), unless a newer snapshot
   * is stored: a broker that lost the topic may still get here, and its older
   * position would make the next recovery replay from entries the new owner
   * may already have trimmed.
   */
  async snapshot(): Promise<void> {
    const run = this.writing.then(() => this.writeSnapshot());
    this.writing = run.catch(() => undefined);
    await run;
  }

  private async writeSnapshot(): Promise<void> {
    const position = this.lastStored;
    if (!position || this.stale) return;
    this.entriesSinceSnapshot = 0;
    const key = dedupKey(this.path);
    const snap: Snapshot = { position, producers: Object.fromEntries(this.persisted) };
    const value = Buffer.from(JSON.stringify(snap));
    for (let attempt = 1; ; attempt++) {
      try {
        // Version 0 when none was stored: the put then only creates the key.
        this.version = await this.store.put(key, value, { expectedVersion: this.version });
        break;
      } catch (err) {
        if (!(err instanceof BadVersionError)) throw err;
        const current = await this.store.get(key);
        if (current?.value.equals(value)) {
          // Our own write, landed though its answer was lost (an etcd timeout): it stands.
          this.version = current.version;
          break;
        }
        const theirs = current && (JSON.parse(current.value.toString('utf8')) as Snapshot).position;
        if (!current || !theirs || comparePositions(theirs, position) >= 0) {
          this.stale = true;
          this.logger.warn(
            {
              topic: this.path,
              ours: formatPosition(position),
              stored: theirs ? formatPosition(theirs) : 'deleted',
            },
            'deduplication snapshot not written: the stored one is newer or was deleted, so another broker owns the topic; this instance stops snapshotting',
          );
          return;
        }
        // An older snapshot, written late by a broker that lost the topic: ours replaces it.
        if (attempt >= SNAPSHOT_CAS_ATTEMPTS) {
          throw new UnavailableError(
            `deduplication snapshot of '${this.path}' lost ${attempt} compare-and-swaps in a row; the next snapshot retries`,
            { cause: err },
          );
        }
        this.version = current.version;
      }
    }
    // Entries after the snapshot must stay readable for recovery; the cursor holds them from trimming.
    this.cursor.ackCumulative(position);
  }

  async close(): Promise<void> {
    await this.snapshotting;
    await this.snapshot();
    await this.cursor.flush();
  }

  private remember(producer: string, seq: number, position: Promise<Position | undefined>): void {
    let m = this.recent.get(producer);
    if (!m) {
      m = new Map();
      this.recent.set(producer, m);
    }
    m.set(seq, position);
    if (m.size > RECENT_PER_PRODUCER) m.delete(m.keys().next().value as number);
  }
}
