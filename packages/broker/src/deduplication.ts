import { comparePositions, type Logger, type Position } from '@sluice/common';
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

export type DedupVerdict =
  | { duplicate: false }
  | { duplicate: true; position: Promise<Position | undefined> };

/** Receipts of recent sends kept per producer, so a retried send gets the original id. */
const RECENT_PER_PRODUCER = 2048;
/** Snapshot after this many stored entries; recovery scans at most this many (plus in-flight). */
const SNAPSHOT_EVERY_ENTRIES = 1000;
const SCAN_CHUNK = 500;

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
  private entriesSinceSnapshot = 0;
  private snapshotting: Promise<void> | undefined;
  private lastStored: Position | undefined;

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
    const cursor = await log.openCursor(DEDUP_CURSOR, 'earliest');
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
    d.entriesSinceSnapshot = scanned;
    logger.debug({ topic: path, scanned, producers: d.persisted.size }, 'deduplication state recovered');
    return d;
  }

  lastSequenceId(producer: string): number {
    return this.pushed.get(producer) ?? -1;
  }

  /** Decide before appending; a new send is recorded as in flight. */
  check(producer: string, firstSequenceId: number, count: number): DedupVerdict {
    const highest = this.pushed.get(producer) ?? -1;
    if (firstSequenceId <= highest) {
      const known = this.recent.get(producer)?.get(firstSequenceId);
      return { duplicate: true, position: known ?? Promise.resolve(undefined) };
    }
    this.pushed.set(producer, firstSequenceId + count - 1);
    return { duplicate: false };
  }

  /** Track an append so that a retry racing it gets its position. */
  appending(producer: string, firstSequenceId: number, position: Promise<Position>): void {
    this.remember(
      producer,
      firstSequenceId,
      position.catch(() => undefined),
    );
  }

  stored(producer: string, firstSequenceId: number, count: number, position: Position): void {
    const highest = firstSequenceId + count - 1;
    if (highest > (this.persisted.get(producer) ?? -1)) this.persisted.set(producer, highest);
    if (!this.lastStored || comparePositions(position, this.lastStored) > 0) this.lastStored = position;
    if (++this.entriesSinceSnapshot >= SNAPSHOT_EVERY_ENTRIES && !this.snapshotting) {
      this.snapshotting = this.snapshot()
        .catch((err) =>
          this.logger.warn({ err, topic: this.path }, 'deduplication snapshot failed; will retry'),
        )
        .finally(() => {
          this.snapshotting = undefined;
        });
    }
  }

  /** An append failed: what was in flight was not stored, so it may be sent again. */
  failed(producer: string): void {
    const p = this.persisted.get(producer);
    if (p === undefined) this.pushed.delete(producer);
    else this.pushed.set(producer, p);
  }

  /** Persist the stored state (also on a clean close). */
  async snapshot(): Promise<void> {
    const position = this.lastStored;
    if (!position) return;
    this.entriesSinceSnapshot = 0;
    const snap: Snapshot = { position, producers: Object.fromEntries(this.persisted) };
    await this.store.put(dedupKey(this.path), Buffer.from(JSON.stringify(snap)));
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
