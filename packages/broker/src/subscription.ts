import {
  comparePositions,
  FailedPreconditionError,
  InvalidArgumentError,
  type Logger,
  OutOfRangeError,
  type Position,
} from '@sluice/common';
import type { Cursor, LogEntry, ManagedLog } from '@sluice/managed-log';
import type { CompressionCodec, Delivery } from '@sluice/proto';
import type { Consumer, PendingEntry } from './consumer.js';
import { posKey } from './consumer.js';
import type { ConsumerSelector, SubscriptionKind } from './consumer-selector.js';
import { DelayedIndex } from './delayed-index.js';
import { decodeEnvelopeOf, type Envelope } from './entry-envelope.js';
import { KeySharedSelector } from './key-shared-selector.js';
import { endPosition, previousPosition } from './log-positions.js';
import { SharedSelector } from './shared-selector.js';
import { SingleActiveSelector } from './single-active-selector.js';

export interface AckId {
  ledgerId: number;
  entryId: number;
  batchIndex: number;
}

export interface SubscriptionOptions {
  /** Entries read per storage read. */
  readBatchEntries: number;
  /** Entries held for redelivery before reading new ones pauses. */
  maxReplayEntries: number;
  /** Bytes of deliveries per gRPC message. */
  maxDeliveryBytes: number;
  /** Positions held for delayed delivery in memory; later ones stay in the log and are re-scanned. */
  maxDelayedEntries: number;
  partition: number;
  /** Non-durable readers never acknowledge: an entry counts as done once delivered, so nothing piles up. */
  ackOnDelivery?: boolean;
}

export const DEFAULT_SUBSCRIPTION_OPTIONS: SubscriptionOptions = {
  readBatchEntries: 100,
  maxReplayEntries: 5000,
  maxDeliveryBytes: 4 * 1024 * 1024,
  maxDelayedEntries: 100_000,
  partition: -1,
};

export interface SubscriptionCounters {
  delivered(messages: number, bytes: number): void;
}

function selectorFor(kind: SubscriptionKind): ConsumerSelector {
  if (kind === 'shared') return new SharedSelector();
  if (kind === 'key_shared') return new KeySharedSelector();
  return new SingleActiveSelector(kind);
}

/** An entry waiting for (re)delivery; `count` is its batch size when known, so a message of it can be acknowledged. */
interface ReplayEntry {
  position: Position;
  count: number | undefined;
}

const byPosition = (a: ReplayEntry, b: ReplayEntry): number => comparePositions(a.position, b.position);
const deliveryKey = (d: Delivery): string =>
  `${Number(d.messageId!.ledgerId)}:${Number(d.messageId!.entryId)}`;

/**
 * Where a new Subscription over `cursor` starts reading: the first entry
 * after mark-delete that is not acknowledged. A new Subscription holds
 * nothing pending, so what an earlier one over the same cursor delivered
 * and never saw acknowledged (before a change of subscription type, say)
 * is delivered again instead of waiting behind the read position until the
 * topic reloads.
 */
function firstUndelivered(log: ManagedLog, cursor: Cursor): Position {
  const next = log.nextPosition(cursor.markDelete);
  if (!next || comparePositions(next, cursor.readPosition) >= 0) return cursor.readPosition;
  const unacked = cursor.firstUnackedFrom(next);
  return comparePositions(unacked, cursor.readPosition) < 0 ? unacked : cursor.readPosition;
}

/** setTimeout fires at once for delays beyond this. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A subscription: one cursor, its consumers, and the dispatch loop that reads
 * the log (new entries at `readPosition`, held or unacknowledged ones from the
 * replay set, oldest first) and routes entries through the type's selector.
 */
export class Subscription {
  private readonly consumers: Consumer[] = [];
  private readonly selector: ConsumerSelector;
  /** Entries to (re)deliver before new ones, by position key. */
  private readonly replay = new Map<string, ReplayEntry>();
  /** Times each entry was handed out again, by position key. */
  private readonly redeliveries = new Map<string, number>();
  private readonly nackTimers = new Set<NodeJS.Timeout>();
  /** Entries waiting in a nack timer: not pending on any consumer, not in replay yet. */
  private readonly nacked = new Map<string, ReplayEntry>();
  /** Bumped by `reset`: a round that awaited across a reset drops what it read. */
  private epoch = 0;
  /**
   * Bumped when consumers' unacknowledged entries go back to the replay set
   * (a consumer left, or the active one changed) on an ordered kind: a round
   * that read while that happened would route newer entries before those
   * older ones (shared promises no order, so its reads are kept).
   */
  private requeues = 0;
  /** Entries that could not be decoded and were skipped (acknowledged). */
  corruptEntries = 0;
  /** Moving average of messages per entry (0 until the first entry), to read about as many entries as the consumers have permits for. */
  private messagesPerEntry = 0;
  private readPosition: Position;
  private closed = false;
  private running: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;
  private dirty = false;
  /** shared / key_shared: entries whose deliverAt is in the future wait here (positions only). */
  private readonly delayed: DelayedIndex;
  private delayTimer: { at: number; timer: NodeJS.Timeout } | undefined;
  /**
   * First position below `readPosition` that may hold a delayed entry the
   * full index could not take; re-scanned once the index has room.
   */
  private rescanFrom: Position | undefined;
  messagesOut = 0;

  constructor(
    readonly name: string,
    readonly kind: SubscriptionKind,
    private readonly log: ManagedLog,
    readonly cursor: Cursor,
    private readonly logger: Logger,
    private readonly options: SubscriptionOptions = DEFAULT_SUBSCRIPTION_OPTIONS,
    private readonly counters?: SubscriptionCounters,
  ) {
    this.selector = selectorFor(kind);
    this.readPosition = firstUndelivered(log, cursor);
    cursor.readPosition = this.readPosition;
    this.delayed = new DelayedIndex(options.maxDelayedEntries);
  }

  /** Delayed delivery applies to shared and key_shared subscriptions (the others deliver in order, at once). */
  private get delaysDelivery(): boolean {
    return this.kind === 'shared' || this.kind === 'key_shared';
  }

  /** Entries held for delayed delivery in memory. */
  delayedEntries(): number {
    return this.delayed.size;
  }

  consumerCount(): number {
    return this.consumers.length;
  }

  consumerList(): readonly Consumer[] {
    return this.consumers;
  }

  unackedMessages(): number {
    return this.consumers.reduce((n, c) => n + c.unackedMessages, 0) + this.replay.size;
  }

  addConsumer(c: Consumer): void {
    if (this.closed) throw new FailedPreconditionError(`subscription '${this.name}' is closed`);
    if (this.kind === 'exclusive' && this.consumers.length > 0) {
      throw new FailedPreconditionError(
        `subscription '${this.name}' is exclusive and consumer '${this.consumers[0]!.name}' is attached; use another subscription or type failover/shared`,
      );
    }
    if (this.kind === 'key_shared' && this.consumers.length > 0) c.joinBarrier = this.readPosition;
    this.consumers.push(c);
    this.consumersChanged();
    this.start();
    this.wake();
  }

  /** Detach a consumer; its unacknowledged entries are redelivered to the others. */
  removeConsumer(c: Consumer): void {
    const i = this.consumers.indexOf(c);
    if (i < 0) return;
    this.consumers.splice(i, 1);
    c.closed = true;
    this.requeue(c, [...c.pending.values()]);
    this.consumersChanged();
    this.wake();
  }

  /**
   * Tell the selector. When the active consumer of an exclusive or failover
   * subscription changes while the old one stays attached, what the old one
   * has not acknowledged goes to the new one before anything newer, as
   * Pulsar rewinds the cursor on an active change: otherwise the new active
   * would acknowledge past entries the old one may never process. Acks the
   * old consumer sends later still count (`ack` finds the entries wherever
   * they wait).
   */
  private consumersChanged(): void {
    const before = this.activeConsumer();
    this.selector.consumersChanged(this.consumers);
    const after = this.activeConsumer();
    if (before && before !== after && !before.closed) this.requeue(before, [...before.pending.values()]);
  }

  private activeConsumer(): Consumer | undefined {
    return this.selector instanceof SingleActiveSelector ? this.selector.activeConsumer() : undefined;
  }

  flow(c: Consumer, permits: number): void {
    if (!Number.isSafeInteger(permits) || permits <= 0) {
      throw new InvalidArgumentError(`flow permits must be a positive integer; got ${permits}`);
    }
    c.permits = Math.min(c.permits + permits, 1_000_000_000);
    this.wake();
  }

  /**
   * Apply acks; returns the ids that were not awaiting acknowledgement. An
   * entry is acknowledged wherever it waits (pending on this or another
   * consumer, queued for redelivery, in a nack delay): right after a
   * reconnect the client's buffered acks name entries requeued from its old stream.
   */
  ack(c: Consumer, ids: AckId[], cumulative: boolean): AckId[] {
    if (cumulative && (this.kind === 'shared' || this.kind === 'key_shared')) {
      throw new InvalidArgumentError(
        `cumulative acks are not allowed on ${this.kind} subscription '${this.name}'; acknowledge messages individually`,
      );
    }
    const unknown: AckId[] = [];
    for (const id of ids) {
      const pos = { ledgerId: id.ledgerId, entryId: id.entryId };
      const k = posKey(pos);
      const owner = c.pending.has(k) ? c : this.consumers.find((o) => o.pending.has(k));
      const p = owner?.pending.get(k);
      const count = p?.count ?? this.replay.get(k)?.count ?? this.nacked.get(k)?.count;
      if (count === undefined || id.batchIndex < 0 || id.batchIndex >= count) {
        unknown.push(id);
        continue;
      }
      if (cumulative) this.ackCumulative(pos, id.batchIndex, count);
      else if (owner && p) this.ackIndex(owner, p, id.batchIndex);
      else this.ackWaiting(pos, id.batchIndex, count);
    }
    this.wake();
    return unknown;
  }

  /**
   * Acknowledge every message of each entry (`Ack.entry_ids`), wherever it
   * waits; returns the entries that were not awaiting acknowledgement. One
   * id per entry instead of one per message: per-message acks were 10-14%
   * of the broker's CPU on a catch-up read.
   */
  ackEntries(c: Consumer, positions: Position[]): Position[] {
    const unknown: Position[] = [];
    for (const pos of positions) {
      const k = posKey(pos);
      const owner = c.pending.has(k) ? c : this.consumers.find((o) => o.pending.has(k));
      const p = owner?.pending.get(k);
      if (owner && p) {
        owner.unackedMessages -= p.count - p.acked.size;
        this.cursor.ack(p.position);
        this.settle(owner, p);
      } else if (this.replay.has(k) || this.nacked.has(k)) {
        this.cursor.ack(pos);
        this.replay.delete(k);
        this.nacked.delete(k);
        this.redeliveries.delete(k);
      } else {
        unknown.push(pos);
      }
    }
    this.wake();
    return unknown;
  }

  /** Redeliver these messages' entries after `delayMs`; returns ids that were not awaiting acknowledgement. */
  nack(c: Consumer, ids: AckId[], delayMs: number): AckId[] {
    const unknown: AckId[] = [];
    const entries: PendingEntry[] = [];
    for (const id of ids) {
      const p = c.pending.get(posKey({ ledgerId: id.ledgerId, entryId: id.entryId }));
      if (!p) unknown.push(id);
      else if (!entries.includes(p)) entries.push(p);
    }
    for (const p of entries) {
      const k = posKey(p.position);
      c.pending.delete(k);
      c.unackedMessages -= p.count - p.acked.size;
      this.nacked.set(k, { position: p.position, count: p.count });
    }
    const epoch = this.epoch;
    const redeliver = (): void => {
      if (this.closed || epoch !== this.epoch) return;
      for (const p of entries) {
        // Acknowledged (or expired) during the delay: nothing to redeliver.
        if (!this.nacked.delete(posKey(p.position))) continue;
        this.enqueueReplay(p.position, true, p.count);
      }
      this.wake();
    };
    if (delayMs > 0) {
      const t = setTimeout(
        () => {
          this.nackTimers.delete(t);
          redeliver();
        },
        Math.min(delayMs, MAX_TIMER_MS),
      );
      t.unref?.();
      this.nackTimers.add(t);
    } else {
      redeliver();
    }
    return unknown;
  }

  /** Move the subscription: nothing before `p` is delivered again, everything from `p` on is. */
  async reset(p: Position): Promise<void> {
    // Rounds reading from the old position while the cursor moves must not apply what they read.
    this.epoch++;
    await this.cursor.reset(p);
    this.epoch++;
    for (const t of this.nackTimers) clearTimeout(t);
    this.nackTimers.clear();
    this.nacked.clear();
    for (const c of this.consumers) {
      c.pending.clear();
      c.unackedMessages = 0;
    }
    this.replay.clear();
    this.redeliveries.clear();
    this.delayed.clear();
    this.rescanFrom = undefined;
    this.clearDelayTimer();
    this.readPosition = this.cursor.readPosition;
    this.wake();
  }

  /**
   * Acknowledge everything up to and including `p` on behalf of the
   * subscription (message TTL, backlog eviction): consumers stop waiting for
   * those entries and none of them is delivered again.
   */
  expireUpTo(p: Position): void {
    const upTo = (q: Position): boolean => comparePositions(q, p) <= 0;
    for (const c of this.consumers) {
      for (const [k, e] of [...c.pending]) {
        if (!upTo(e.position)) continue;
        c.pending.delete(k);
        c.unackedMessages -= e.count - e.acked.size;
      }
    }
    for (const [k, q] of [...this.replay]) if (upTo(q.position)) this.replay.delete(k);
    for (const [k, q] of [...this.nacked]) if (upTo(q.position)) this.nacked.delete(k);
    for (const k of [...this.redeliveries.keys()]) {
      const [ledgerId, entryId] = k.split(':').map(Number);
      if (upTo({ ledgerId: ledgerId!, entryId: entryId! })) this.redeliveries.delete(k);
    }
    this.delayed.removeWhere(upTo);
    const next = this.log.nextPosition(p) ?? { ledgerId: p.ledgerId, entryId: p.entryId + 1 };
    if (this.rescanFrom && upTo(this.rescanFrom)) {
      this.rescanFrom = comparePositions(next, this.readPosition) < 0 ? next : undefined;
    }
    if (upTo(this.readPosition)) {
      this.readPosition = next;
      this.cursor.readPosition = next;
    }
    this.cursor.ackCumulative(p);
    this.armDelayTimer();
    this.wake();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.nackTimers) clearTimeout(t);
    this.nackTimers.clear();
    this.nacked.clear();
    this.clearDelayTimer();
    this.wake();
    await this.running;
    await this.cursor
      .flush()
      .catch((err) => this.logger.warn({ err, sub: this.name }, 'cursor flush failed on close'));
  }

  private ackIndex(c: Consumer, p: PendingEntry, index: number): void {
    if (p.acked.has(index)) return;
    p.acked.add(index);
    c.unackedMessages--;
    if (p.count === 1 || p.acked.size === p.count) {
      this.cursor.ack(p.position);
      this.settle(c, p);
    } else {
      this.cursor.ackBatchIndex(p.position, index, p.count);
    }
  }

  /** Acknowledge message `index` of an entry that is not pending on any consumer. */
  private ackWaiting(pos: Position, index: number, count: number): void {
    const k = posKey(pos);
    const waiting = this.replay.get(k) ?? this.nacked.get(k);
    if (count === 1 || this.batchDone(pos, index, count)) {
      this.cursor.ack(pos);
      this.replay.delete(k);
      this.nacked.delete(k);
      this.redeliveries.delete(k);
    } else {
      this.cursor.ackBatchIndex(pos, index, count);
      if (waiting) waiting.count = count;
    }
  }

  /** Acknowledging `index` completes the batch (every other index already acknowledged). */
  private batchDone(pos: Position, index: number, count: number): boolean {
    const acked = this.cursor.ackedBatchIndexes(pos) ?? [];
    return acked.length === count - 1 && !acked.includes(index);
  }

  /**
   * Everything before `pos`, and messages 0..index of `pos`, wherever they
   * wait: pending on a consumer, queued for redelivery, in a nack delay.
   */
  private ackCumulative(pos: Position, index: number, count: number): void {
    const below = (q: Position): boolean => comparePositions(q, pos) < 0;
    for (const o of this.consumers) {
      for (const other of [...o.pending.values()]) {
        if (!below(other.position)) continue;
        o.unackedMessages -= other.count - other.acked.size;
        this.settle(o, other);
      }
    }
    for (const [k, q] of [...this.replay]) {
      if (!below(q.position)) continue;
      this.replay.delete(k);
      this.redeliveries.delete(k);
    }
    for (const [k, q] of [...this.nacked]) if (below(q.position)) this.nacked.delete(k);
    const k = posKey(pos);
    const owner = this.consumers.find((o) => o.pending.has(k));
    const p = owner?.pending.get(k);
    if (index === count - 1) {
      if (owner && p) {
        owner.unackedMessages -= p.count - p.acked.size;
        this.settle(owner, p);
      }
      this.replay.delete(k);
      this.nacked.delete(k);
      this.redeliveries.delete(k);
      this.cursor.ackCumulative(pos);
      return;
    }
    this.cursor.ackCumulative(previousPosition(this.log, pos));
    for (let i = 0; i <= index; i++) {
      if (owner && p) this.ackIndex(owner, p, i);
      else if (!(this.cursor.ackedBatchIndexes(pos) ?? []).includes(i)) this.ackWaiting(pos, i, count);
    }
  }

  private settle(c: Consumer, p: PendingEntry): void {
    const k = posKey(p.position);
    c.pending.delete(k);
    this.redeliveries.delete(k);
  }

  private requeue(c: Consumer, entries: PendingEntry[]): void {
    if (entries.length > 0 && this.kind !== 'shared') this.requeues++;
    for (const p of entries) {
      c.pending.delete(posKey(p.position));
      this.enqueueReplay(p.position, true, p.count);
    }
    c.unackedMessages = 0;
  }

  private enqueueReplay(p: Position, redelivery: boolean, count?: number): void {
    const k = posKey(p);
    if (redelivery) this.redeliveries.set(k, (this.redeliveries.get(k) ?? 0) + 1);
    this.replay.set(k, { position: p, count: count ?? this.replay.get(k)?.count });
  }

  /** One timer for the earliest delayed entry: due entries move to the replay set. */
  private armDelayTimer(): void {
    const next = this.delayed.nextTime();
    if (next === undefined || this.closed) {
      this.clearDelayTimer();
      return;
    }
    if (this.delayTimer && this.delayTimer.at <= next) return;
    this.clearDelayTimer();
    const wait = Math.min(Math.max(0, next - Date.now()), 2 ** 31 - 1);
    const timer = setTimeout(() => {
      this.delayTimer = undefined;
      if (this.closed) return;
      for (const p of this.delayed.popDue(Date.now())) this.enqueueReplay(p, false);
      this.armDelayTimer();
      this.wake();
    }, wait);
    timer.unref?.();
    this.delayTimer = { at: next, timer };
  }

  private clearDelayTimer(): void {
    if (this.delayTimer) clearTimeout(this.delayTimer.timer);
    this.delayTimer = undefined;
  }

  /** The index could not take `p`: remember to re-scan the log from there. */
  private overflowed(p: Position): void {
    if (!this.rescanFrom || comparePositions(p, this.rescanFrom) < 0) this.rescanFrom = p;
  }

  private wake(): void {
    this.dirty = true;
    const w = this.wakeUp;
    this.wakeUp = undefined;
    w?.();
  }

  private start(): void {
    if (this.running || this.closed) return;
    this.running = this.loop().finally(() => {
      this.running = undefined;
    });
  }

  private async loop(): Promise<void> {
    while (!this.closed) {
      this.dirty = false;
      let outcome: 'progress' | 'no-capacity' | 'no-data';
      let lastSeen: Position | undefined;
      try {
        lastSeen = this.log.lastPosition();
        outcome = await this.round();
      } catch (err) {
        if (this.closed) return;
        this.logger.warn({ err, sub: this.name }, 'dispatch read failed; retrying');
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      if (this.closed) return;
      if (this.consumers.length === 0 && this.replay.size === 0) {
        // Nothing to do until a consumer comes back; the loop restarts then.
        return;
      }
      if (outcome === 'progress' || this.dirty) {
        await new Promise((r) => setImmediate(r));
        continue;
      }
      let resolveWoken!: () => void;
      const woken = new Promise<void>((r) => {
        resolveWoken = r;
        this.wakeUp = r;
      });
      // Without data the log wakes the loop too; one promise per wait (this runs for every entry a tailing subscription sees).
      const cancel = outcome === 'no-data' ? this.log.onEntryAfter(lastSeen, resolveWoken) : undefined;
      await woken;
      cancel?.();
      this.wakeUp = undefined;
      if (this.consumers.length === 0) return;
    }
  }

  private markDeleteNext(): Position | undefined {
    return this.log.nextPosition(this.cursor.markDelete);
  }

  /** One dispatch round: held/replayed entries first, then new ones. */
  private async round(): Promise<'progress' | 'no-capacity' | 'no-data'> {
    if (!this.selector.anyCapacity()) return 'no-capacity';
    const held = new Set<Consumer | 'all'>();
    const out = new Map<Consumer, { deliveries: Delivery[]; bytes: number }>();
    let dispatched = 0;
    const markDeleteNext = this.markDeleteNext();
    const epoch = this.epoch;
    const requeues = this.requeues;
    // A seek (or close) while this round awaited a read: what was routed goes out, the rest is dropped.
    // Entries requeued meanwhile are older than what the read returned: the next round serves them
    // first, and what this round routed goes out only if it is still that consumer's to process.
    const interrupted = (): boolean => {
      if (!this.closed && this.epoch === epoch && this.requeues === requeues) return false;
      this.flush(out, this.requeues !== requeues);
      return true;
    };

    this.dropTrimmedReplay();
    const replayTotal = this.replay.size;
    const replayPositions = [...this.replay.values()]
      .sort(byPosition)
      .slice(0, this.options.readBatchEntries)
      .map((e) => e.position);
    if (replayPositions.length > 0) {
      const read = await this.readPositions(replayPositions);
      if (interrupted()) return 'progress';
      for (const entry of read) {
        const r = this.route(entry, held, out, markDeleteNext, true);
        if (r !== 'held') this.replay.delete(posKey(entry.position));
        if (r === 'sent') dispatched++;
      }
      // Positions that no longer exist (trimmed) or were acknowledged meanwhile.
      for (const p of replayPositions) if (this.cursor.isAcked(p)) this.replay.delete(posKey(p));
    }

    if (this.rescanFrom && this.delayed.size < this.options.maxDelayedEntries / 2) {
      dispatched += await this.rescan(held, out, markDeleteNext);
      if (interrupted()) return 'progress';
    }

    // Ordered kinds read nothing new while older entries wait unexamined for redelivery:
    // a reconnecting consumer gets its backlog oldest first, not interleaved with new entries.
    const replayExamined = this.kind === 'shared' || replayTotal <= this.options.readBatchEntries;
    let sawNew = false;
    if (
      replayExamined &&
      this.replay.size < this.options.maxReplayEntries &&
      this.selector.anyCapacity() &&
      !held.has('all')
    ) {
      let entries: LogEntry[];
      try {
        entries = await this.log.read(this.readPosition, this.entriesWanted());
      } catch (err) {
        if (interrupted()) return 'progress';
        if (!this.skipTrimmed(err)) throw err;
        this.flush(out);
        return 'progress';
      }
      if (interrupted()) return 'progress';
      sawNew = entries.length > 0;
      for (const entry of entries) {
        const r = this.route(entry, held, out, markDeleteNext, false);
        if (r === 'sent') dispatched++;
      }
      if (sawNew) {
        const last = entries[entries.length - 1]!.position;
        this.readPosition = this.log.nextPosition(last) ?? {
          ledgerId: last.ledgerId,
          entryId: last.entryId + 1,
        };
        this.cursor.readPosition = this.readPosition;
      }
    }
    this.flush(out);
    if (dispatched > 0 || sawNew) return 'progress';
    return replayPositions.length > 0 || !this.selector.anyCapacity() ? 'no-capacity' : 'no-data';
  }

  /**
   * New entries worth reading this round: what the consumers' permits can
   * take, at the recent messages per entry, up to `readBatchEntries` (as
   * Pulsar sizes its reads). Reading a full batch for a few permits sent the
   * rest to the replay set, re-read it every round, and let the read position
   * run blocks ahead of delivery, which evicted catch-up blocks from the
   * read-ahead cache before they were delivered.
   */
  private entriesWanted(): number {
    let permits = 0;
    for (const c of this.consumers) if (!c.closed && c.permits > 0) permits += c.permits;
    const entries = Math.ceil(permits / Math.max(1, this.messagesPerEntry));
    return Math.max(1, Math.min(this.options.readBatchEntries, entries));
  }

  /**
   * The log refused the read position as out of range because it lies
   * before the first stored entry (a reader left behind by retention, a
   * cursor whose ledger was trimmed): continue at the oldest stored entry,
   * as Pulsar's readers do. Without this the loop retried the same read
   * every 200 ms forever. Returns false for any other failure.
   */
  private skipTrimmed(err: unknown): boolean {
    if (!(err instanceof OutOfRangeError)) return false;
    const first = this.log.firstPosition() ?? endPosition(this.log);
    if (comparePositions(this.readPosition, first) >= 0) return false;
    this.logger.warn(
      { sub: this.name, from: this.readPosition, to: first },
      'read position was trimmed from the log; continuing at the oldest stored entry',
    );
    this.readPosition = first;
    this.cursor.readPosition = first;
    return true;
  }

  /** Entries waiting for redelivery that the log trimmed meanwhile: nothing is left to deliver, and reading them fails. */
  private dropTrimmedReplay(): void {
    if (this.replay.size === 0) return;
    const first = this.log.firstPosition() ?? endPosition(this.log);
    for (const [k, e] of this.replay) {
      if (comparePositions(e.position, first) >= 0) continue;
      this.replay.delete(k);
      this.redeliveries.delete(k);
    }
  }

  /** Re-read the part of the log where delayed entries overflowed the index. */
  private async rescan(
    held: Set<Consumer | 'all'>,
    out: Map<Consumer, { deliveries: Delivery[]; bytes: number }>,
    markDeleteNext: Position | undefined,
  ): Promise<number> {
    const from = this.rescanFrom!;
    this.rescanFrom = undefined;
    const epoch = this.epoch;
    const requeues = this.requeues;
    let read: LogEntry[];
    try {
      read = await this.log.read(from, this.options.readBatchEntries);
    } catch (err) {
      if (!(err instanceof OutOfRangeError)) {
        this.rescanFrom = from;
        throw err;
      }
      // Trimmed meanwhile: what is left to re-scan starts at the first stored entry.
      const first = this.log.firstPosition();
      if (first && comparePositions(first, this.readPosition) < 0) this.rescanFrom = first;
      return 0;
    }
    if (this.closed || this.epoch !== epoch) return 0;
    if (this.requeues !== requeues) {
      // Older entries were requeued meanwhile; the round starts again and re-scans from here.
      this.overflowed(from);
      return 0;
    }
    const entries = read.filter((e) => comparePositions(e.position, this.readPosition) < 0);
    let dispatched = 0;
    let last: Position | undefined;
    for (const entry of entries) {
      const r = this.route(entry, held, out, markDeleteNext, false);
      if (r === 'sent') dispatched++;
      last = entry.position;
      // The index filled up again: continue from the entry it could not take.
      if (this.rescanFrom) return dispatched;
    }
    if (last) {
      const next = this.log.nextPosition(last);
      if (next && comparePositions(next, this.readPosition) < 0) this.rescanFrom = next;
    } else if (entries.length === 0 && comparePositions(from, this.readPosition) < 0) {
      // Nothing readable there any more (trimmed): nothing left to re-scan.
      this.rescanFrom = undefined;
    }
    return dispatched;
  }

  private async readPositions(positions: Position[]): Promise<LogEntry[]> {
    const out: LogEntry[] = [];
    let i = 0;
    while (i < positions.length) {
      const first = positions[i]!;
      let n = 1;
      while (
        i + n < positions.length &&
        positions[i + n]!.ledgerId === first.ledgerId &&
        positions[i + n]!.entryId === first.entryId + n
      ) {
        n++;
      }
      const entries = await this.log.read(first, n);
      for (const e of entries) {
        if (e.position.ledgerId === first.ledgerId && e.position.entryId < first.entryId + n) out.push(e);
      }
      i += n;
    }
    return out;
  }

  private route(
    entry: LogEntry,
    held: Set<Consumer | 'all'>,
    out: Map<Consumer, { deliveries: Delivery[]; bytes: number }>,
    markDeleteNext: Position | undefined,
    fromReplay: boolean,
  ): 'sent' | 'held' | 'skipped' | 'delayed' {
    const k = posKey(entry.position);
    if (this.cursor.isAcked(entry.position)) return 'skipped';
    if (!fromReplay && this.replay.has(k)) return 'skipped';
    if (this.delayed.has(entry.position) || this.nacked.has(k)) return 'skipped';
    for (const c of this.consumers) if (c.pending.has(k)) return 'skipped';
    let env: Envelope;
    try {
      env = decodeEnvelopeOf(entry);
    } catch (err) {
      // Undeliverable for good: acknowledging it keeps it from stalling the subscription.
      this.corruptEntries++;
      this.logger.error(
        { err, sub: this.name, position: entry.position },
        'skipping an entry that cannot be decoded',
      );
      this.cursor.ack(entry.position);
      this.redeliveries.delete(k);
      return 'skipped';
    }
    const count = Math.max(1, env.count);
    this.messagesPerEntry =
      this.messagesPerEntry === 0 ? count : this.messagesPerEntry + (count - this.messagesPerEntry) / 16;
    if (this.delaysDelivery && env.deliverAt > Date.now()) {
      if (!this.delayed.add(entry.position, env.deliverAt)) this.overflowed(entry.position);
      this.armDelayTimer();
      return 'delayed';
    }
    const c = this.selector.pick(
      { position: entry.position, key: env.key, count: env.count },
      held,
      markDeleteNext,
    );
    if (!c) {
      this.enqueueReplay(entry.position, false, env.count);
      return 'held';
    }
    const ackedIndexes = env.count > 1 ? (this.cursor.ackedBatchIndexes(entry.position) ?? []) : [];
    const live = env.count - ackedIndexes.length;
    c.permits -= live;
    if (this.options.ackOnDelivery) {
      this.redeliveries.delete(k);
    } else {
      c.unackedMessages += live;
      c.pending.set(k, { position: entry.position, count: env.count, acked: new Set(ackedIndexes) });
    }
    const delivery: Delivery = {
      messageId: {
        ledgerId: entry.position.ledgerId,
        entryId: entry.position.entryId,
        batchIndex: 0,
        partition: this.options.partition,
      },
      batch: {
        header: {
          count: env.count,
          firstSequenceId: env.firstSequenceId,
          codec: env.codec as CompressionCodec,
          uncompressedSize: env.uncompressedSize,
          key: env.key,
          deliverAt: env.deliverAt,
        },
        payload: env.payload,
      },
      publishTime: env.publishTime,
      redeliveryCount: this.redeliveries.get(k) ?? 0,
      ackedIndexes,
      producerName: env.producerName,
    };
    let group = out.get(c);
    if (!group || group.bytes + env.payload.length > this.options.maxDeliveryBytes) {
      if (group) this.send(c, group.deliveries);
      group = { deliveries: [], bytes: 0 };
      out.set(c, group);
    }
    group.deliveries.push(delivery);
    group.bytes += env.payload.length;
    this.messagesOut += live;
    this.counters?.delivered(live, env.payload.length);
    return 'sent';
  }

  /** Send what was routed; `onlyPending` drops deliveries whose entries were taken back from their consumer since. */
  private flush(out: Map<Consumer, { deliveries: Delivery[]; bytes: number }>, onlyPending = false): void {
    for (const [c, g] of out) {
      const deliveries =
        onlyPending && !this.options.ackOnDelivery
          ? g.deliveries.filter((d) => c.pending.has(deliveryKey(d)))
          : g.deliveries;
      if (deliveries.length > 0) this.send(c, deliveries);
    }
  }

  private send(c: Consumer, deliveries: Delivery[]): void {
    if (c.closed) {
      // The consumer left between routing and sending: its entries go back for redelivery.
      for (const d of deliveries) {
        const p = { ledgerId: Number(d.messageId!.ledgerId), entryId: Number(d.messageId!.entryId) };
        this.enqueueReplay(p, false, d.batch?.header?.count);
      }
      return;
    }
    c.sink.deliver(deliveries);
  }
}
