import {
  AlreadyExistsError,
  ClosedError,
  comparePositions,
  FailedPreconditionError,
  FencedError,
  InvalidArgumentError,
  type Logger,
  NotFoundError,
  type Position,
  ResourceExhaustedError,
  UnavailableError,
} from '@sluice/common';
import type { Cursor, EntryBytes, ManagedLog } from '@sluice/managed-log';
import type { MetadataStore } from '@sluice/metadata';
import type { BatchHeader__Output } from '@sluice/proto';
import { backlogQuotaPolicy, cursorBacklogBytes, evictionPoint, ttlExpiryPoint } from './backlog-quota.js';
import type { SubscriptionKind } from './consumer-selector.js';
import { DEDUP_CURSOR, Deduplication } from './deduplication.js';
import {
  CODEC_NUMBERS,
  type EnvelopeHeader,
  encodeEnvelope,
  encodeEnvelopeParts,
  envelopePublishTime,
  ownsItsMemory,
} from './entry-envelope.js';
import { dedupKey } from './metadata-keys.js';
import { NonDurableCursor } from './non-durable-cursor.js';
import type { EffectivePolicies } from './policies.js';
import { PublishRateLimiter } from './publish-rate-limiter.js';
import { DEFAULT_SUBSCRIPTION_OPTIONS, Subscription, type SubscriptionCounters } from './subscription.js';
import type { TopicName } from './topic-name.js';

export interface PublishResult {
  position: Position | undefined;
  duplicate: boolean;
}

/** A connected producer as the topic sees it: closing it ends its stream. */
export interface ProducerHandle {
  readonly name: string;
  /** Its stream is still open (not ended, cancelled or failed). */
  readonly connected: boolean;
  kick(err: unknown): void;
}

/** Broker-wide traffic counters, told which topic moved the traffic. */
export interface TopicCounters {
  published(topic: TopicName, messages: number, bytes: number): void;
  delivered(topic: TopicName, messages: number, bytes: number): void;
}

export type ProducerAccessMode = 'shared' | 'exclusive' | 'wait_for_exclusive';

/** How often a held producer re-checks the backlog quota. */
const QUOTA_HOLD_POLL_MS = 100;
/** How long a computed backlog-quota verdict is reused by sends. */
const QUOTA_CACHE_MS = 100;

/** Subscriptions whose cursors hold data for the broker itself, hidden from users. */
export const isInternalCursor = (name: string): boolean => name.startsWith('__');

/**
 * A topic served by this broker: its managed log, producers, subscriptions
 * and deduplication state. Opened by the bundle's owner only.
 */
export class Topic {
  readonly producers = new Map<string, ProducerHandle>();
  readonly subscriptions = new Map<string, Subscription>();
  /** Traffic of every subscription and reader of this topic. */
  private readonly deliveryCounters: SubscriptionCounters = {
    delivered: (messages, bytes) => {
      this.msgOut += messages;
      this.bytesOut += bytes;
      this.counters?.delivered(this.name, messages, bytes);
    },
  };
  /** Non-durable readers: one in-memory subscription per reader stream. */
  readonly readers = new Set<Subscription>();
  private closed = false;
  private current: EffectivePolicies;
  private readonly rateLimiter: PublishRateLimiter;
  /** Name of the producer that holds the topic exclusively, if any. */
  private exclusiveProducer: string | undefined;
  /** Wake-ups of wait-for-exclusive producers, called whenever a producer leaves. */
  private readonly producerLeft = new Set<() => void>();
  /** Producers held by the backlog quota, failed when the topic closes. */
  private readonly held = new Set<{ timer: NodeJS.Timeout; reject: (err: Error) => void }>();
  private quotaVerdict: { at: number; bytes: number } | undefined;
  /** Bytes admitted and not yet stored, and stored since `quotaVerdict` was computed: pipelined sends count at once. */
  private admittedBytes = 0;
  private storedSinceVerdict = 0;
  private maintaining = false;
  private readerIds = 0;
  msgIn = 0;
  bytesIn = 0;
  msgOut = 0;
  bytesOut = 0;
  /** Rates over the last sampling window, refreshed by the broker's load loop. */
  rates = { msgIn: 0, bytesIn: 0, msgOut: 0, bytesOut: 0, subOut: new Map<string, number>() };
  private lastSample = {
    at: Date.now(),
    msgIn: 0,
    bytesIn: 0,
    msgOut: 0,
    bytesOut: 0,
    subOut: new Map<string, number>(),
  };

  private constructor(
    readonly name: TopicName,
    readonly log: ManagedLog,
    private readonly store: MetadataStore,
    policies: EffectivePolicies,
    private readonly dedup: Deduplication,
    private readonly logger: Logger,
    private readonly counters: TopicCounters | undefined,
    private readonly onFenced: (topic: Topic) => void,
  ) {
    this.current = policies;
    this.rateLimiter = new PublishRateLimiter(policies.publishRate);
  }

  /** Effective policies; changes apply to a loaded topic without an unload. */
  get policies(): EffectivePolicies {
    return this.current;
  }

  updatePolicies(p: EffectivePolicies): void {
    this.current = p;
    this.rateLimiter.update(p.publishRate);
    this.quotaVerdict = undefined;
  }

  static async open(
    name: TopicName,
    log: ManagedLog,
    store: MetadataStore,
    policies: EffectivePolicies,
    logger: Logger,
    counters: TopicCounters | undefined,
    onFenced: (topic: Topic) => void,
  ): Promise<Topic> {
    const dedup = await Deduplication.recover(store, log, name.path, logger);
    return new Topic(name, log, store, policies, dedup, logger, counters, onFenced);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  lastSequenceId(producer: string): number {
    return this.dedup.lastSequenceId(producer);
  }

  /**
   * Attach a producer. shared: refused while another producer holds the topic
   * exclusively; exclusive: refused unless it is alone; wait_for_exclusive:
   * waits (until `signal` aborts) for every other producer to leave.
   */
  async addProducer(p: ProducerHandle, mode: ProducerAccessMode, signal?: AbortSignal): Promise<void> {
    this.checkOpen();
    this.checkNameFree(p);
    const others = (): string[] => [...this.producers.keys()].filter((n) => n !== p.name);
    if (mode === 'wait_for_exclusive') {
      while (others().length > 0) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            this.producerLeft.delete(done);
            signal?.removeEventListener('abort', done);
            resolve();
          };
          this.producerLeft.add(done);
          signal?.addEventListener('abort', done, { once: true });
        });
        if (signal?.aborted)
          throw new ClosedError(`producer '${p.name}' stopped waiting for exclusive access`);
        this.checkOpen();
      }
    } else if (mode === 'exclusive' && others().length > 0) {
      throw new FailedPreconditionError(
        `topic '${this.name.full}' already has producer(s) ${others().slice(0, 3).join(', ')}; an exclusive producer needs the topic to itself (use wait-for-exclusive to wait for them to leave)`,
      );
    } else if (this.exclusiveProducer && this.exclusiveProducer !== p.name) {
      throw new FailedPreconditionError(
        `topic '${this.name.full}' is held by exclusive producer '${this.exclusiveProducer}'; wait for it to leave or use wait-for-exclusive`,
      );
    }
    // Checked again: another stream may have taken the name while this one waited.
    this.checkNameFree(p);
    this.producers.set(p.name, p);
    if (mode !== 'shared') this.exclusiveProducer = p.name;
    else if (this.exclusiveProducer === p.name) this.exclusiveProducer = undefined;
  }

  /**
   * Refuse a producer whose name a connected producer holds, as Pulsar does
   * (ProducerBusy). Two live producers under one name kicked each other off
   * forever, and deduplication dropped one's sends as duplicates of the
   * other's sequence ids. A client reconnecting after its stream broke gets
   * in once the broker has seen the old stream end (the stream's end, cancel
   * or error releases the name); until then it is refused and retries.
   */
  private checkNameFree(p: ProducerHandle): void {
    const old = this.producers.get(p.name);
    if (!old || old === p) return;
    if (!old.connected) {
      // Its stream is gone but its cleanup has not run yet: the name is free.
      old.kick(new ClosedError(`producer '${p.name}' was replaced after its stream ended`));
      this.removeProducer(old);
      return;
    }
    throw new AlreadyExistsError(
      `producer name '${p.name}' is in use by a connected producer on topic '${this.name.full}'; give each producer a distinct producerName (or leave it empty to get a generated one)`,
    );
  }

  removeProducer(p: ProducerHandle): void {
    if (this.producers.get(p.name) !== p) return;
    this.producers.delete(p.name);
    if (this.exclusiveProducer === p.name) this.exclusiveProducer = undefined;
    for (const wake of [...this.producerLeft]) wake();
  }

  /**
   * Wait until a batch may be stored: the backlog quota (producer_hold waits,
   * producer_exception refuses with RESOURCE_EXHAUSTED) and the publish rate
   * limit (waits). Callers admit one producer's batches in send order.
   */
  async admit(messages: number, bytes: number): Promise<void> {
    this.checkOpen();
    // Read afresh on every round of a hold: a policy update applies to held sends too.
    for (;;) {
      const quota = this.current.backlogQuota;
      if (quota.limitBytes < 0) break;
      const policy = backlogQuotaPolicy(quota.policy);
      if (policy !== 'producer_exception' && policy !== 'producer_hold') break;
      const v = this.quotaState();
      if (!v.over) break;
      if (policy === 'producer_exception') {
        throw new ResourceExhaustedError(
          `topic '${this.name.full}' has a backlog of ~${Math.round(v.bytes)} bytes, over its quota of ${quota.limitBytes} bytes; consumers must catch up (or raise the backlog quota) before more is accepted`,
        );
      }
      await this.holdFor(QUOTA_HOLD_POLL_MS);
      this.checkOpen();
    }
    await this.rateLimiter.acquire(messages, bytes);
    this.checkOpen();
    this.admittedBytes += bytes;
  }

  /** The largest subscription backlog against the quota (cached briefly: sends call this per batch). */
  private quotaState(): { over: boolean; bytes: number } {
    const now = Date.now();
    if (!this.quotaVerdict || now - this.quotaVerdict.at >= QUOTA_CACHE_MS) {
      let bytes = 0;
      for (const c of this.userCursors()) bytes = Math.max(bytes, cursorBacklogBytes(this.log, c));
      this.quotaVerdict = { at: now, bytes };
      this.storedSinceVerdict = 0;
    }
    const limit = this.current.backlogQuota.limitBytes;
    const bytes = this.quotaVerdict.bytes + this.storedSinceVerdict + this.admittedBytes;
    return { over: limit >= 0 && bytes > limit, bytes };
  }

  private holdFor(ms: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const entry = {
        timer: setTimeout(() => {
          this.held.delete(entry);
          resolve();
        }, ms),
        reject,
      };
      this.held.add(entry);
    });
  }

  /** Durable subscriptions' cursors (not the broker's internal ones). */
  private userCursors(): Cursor[] {
    return this.log.cursors().filter((c) => !isInternalCursor(c.name));
  }

  /**
   * Periodic policy work: expire messages older than the TTL on every
   * subscription, and evict the oldest backlog of subscriptions over a
   * consumer_backlog_eviction quota. Eviction moves only the offending
   * cursors, so nothing another subscription still needs is deleted.
   */
  async maintain(now = Date.now()): Promise<void> {
    if (this.closed || this.maintaining) return;
    this.maintaining = true;
    let moved = false;
    try {
      this.dedup.forgetIdle((name) => this.producers.has(name), now);
      const p = this.current;
      if (p.messageTtlMs > 0 && this.userCursors().some((c) => c.backlog() > 0)) {
        const point = await ttlExpiryPoint(this.log, p.messageTtlMs, now);
        if (point && !this.closed) {
          for (const c of this.userCursors()) moved = this.expire(c, point, 'ttl') || moved;
        }
      }
      const quota = p.backlogQuota;
      if (quota.limitBytes >= 0 && backlogQuotaPolicy(quota.policy) === 'consumer_backlog_eviction') {
        const offenders = this.userCursors().filter(
          (c) => cursorBacklogBytes(this.log, c) > quota.limitBytes,
        );
        const point = offenders.length > 0 ? evictionPoint(this.log, quota.limitBytes) : undefined;
        if (point) for (const c of offenders) moved = this.expire(c, point, 'backlog-eviction') || moved;
      }
      if (moved && !this.closed) {
        this.quotaVerdict = undefined;
        await this.log.trim();
      }
    } finally {
      this.maintaining = false;
    }
  }

  private expire(c: Cursor, point: Position, why: string): boolean {
    if (comparePositions(point, c.markDelete) <= 0) return false;
    const sub = this.subscriptions.get(c.name);
    try {
      if (sub && sub.cursor === c) sub.expireUpTo(point);
      else c.ackCumulative(point);
    } catch (err) {
      this.logger.warn({ err, topic: this.name.full, sub: c.name, why }, 'could not move the cursor');
      return false;
    }
    this.logger.info({ topic: this.name.full, sub: c.name, why, upTo: point }, 'messages expired');
    return true;
  }

  /** Store a batch admitted by `admit` (its bytes leave the admitted count whatever happens). */
  async publish(producer: string, header: BatchHeader__Output, payload: Buffer): Promise<PublishResult> {
    let stored = false;
    try {
      const r = await this.appendBatch(producer, header, payload);
      stored = !r.duplicate;
      return r;
    } finally {
      this.admittedBytes = Math.max(0, this.admittedBytes - payload.length);
      if (stored) this.storedSinceVerdict += payload.length;
    }
  }

  private async appendBatch(
    producer: string,
    header: BatchHeader__Output,
    payload: Buffer,
  ): Promise<PublishResult> {
    this.checkOpen();
    const first = Number(header.firstSequenceId);
    // Built before the dedup check: a batch that cannot be encoded must not be recorded as seen.
    const envelope: EnvelopeHeader = {
      publishTime: Date.now(),
      producerName: producer,
      firstSequenceId: first,
      count: header.count,
      codec: CODEC_NUMBERS[String(header.codec)] ?? 0,
      uncompressedSize: header.uncompressedSize,
      deliverAt: Number(header.deliverAt),
      key: header.key,
    };
    // The payload as received, behind its own header: the bookies, the tail
    // cache and the dispatch to consumers all take the parts, so the batch is
    // not copied into a joined entry (one copy and one large allocation per
    // batch less). A payload sharing a larger allocation is copied instead.
    const entry = ownsItsMemory(payload)
      ? encodeEnvelopeParts(envelope, payload)
      : encodeEnvelope(envelope, payload);
    if (!this.policies.deduplicationEnabled) return this.storeEntry(entry, header.count, payload.length);
    // A retry racing its original waits for it; if the original fails, the retry is checked (and written) once more.
    for (let attempt = 0; ; attempt++) {
      const verdict = this.dedup.check(producer, first, header.count);
      if (!verdict.duplicate) break;
      try {
        return { position: await verdict.position, duplicate: true };
      } catch (err) {
        this.checkOpen();
        if (attempt > 0) {
          throw new UnavailableError(
            `the first write of sequence id ${first} from producer '${producer}' failed; resend it`,
            { cause: err },
          );
        }
      }
    }
    let appended: Promise<Position>;
    try {
      appended = this.log.append(entry);
    } catch (err) {
      this.dedup.failed(producer, first);
      throw err;
    }
    return this.storeEntry(
      this.dedup.track(producer, first, header.count, appended),
      header.count,
      payload.length,
    );
  }

  private async storeEntry(
    write: EntryBytes | Promise<Position>,
    messages: number,
    bytes: number,
  ): Promise<PublishResult> {
    try {
      const position = await (write instanceof Promise ? write : this.log.append(write));
      this.msgIn += messages;
      this.bytesIn += bytes;
      this.counters?.published(this.name, messages, bytes);
      return { position, duplicate: false };
    } catch (err) {
      if (err instanceof FencedError || this.log.fenced) this.onFenced(this);
      throw err;
    }
  }

  async subscription(
    name: string,
    kind: SubscriptionKind,
    initial: 'earliest' | 'latest',
  ): Promise<Subscription> {
    this.checkOpen();
    const existing = this.subscriptions.get(name);
    if (existing) {
      if (existing.kind !== kind && existing.consumerCount() > 0) {
        throw new FailedPreconditionError(
          `subscription '${name}' is ${existing.kind} with consumers attached; subscribe with type ${existing.kind}`,
        );
      }
      if (existing.kind === kind) return existing;
      await existing.close();
      this.subscriptions.delete(name);
    }
    const cursor = await this.log.openCursor(name, initial);
    this.checkOpen();
    const again = this.subscriptions.get(name);
    if (again) return again;
    const sub = new Subscription(
      name,
      kind,
      this.log,
      cursor,
      this.logger,
      { ...DEFAULT_SUBSCRIPTION_OPTIONS, partition: this.name.partition },
      this.deliveryCounters,
    );
    this.subscriptions.set(name, sub);
    return sub;
  }

  /**
   * A non-durable reader: an exclusive subscription over an in-memory cursor
   * starting at `start` (inclusive), and the position that resolved to (the
   * first one it delivers). Close it with `closeReader`.
   */
  openReader(
    name: string,
    start: { id: Position } | 'earliest' | 'latest',
  ): { subscription: Subscription; start: Position } {
    this.checkOpen();
    const label = `reader '${name}' on '${this.name.full}'`;
    const resolved = NonDurableCursor.startPosition(this.log, start, label);
    const cursor = new NonDurableCursor(`${name}#${++this.readerIds}`, this.log, resolved);
    const sub = new Subscription(
      name,
      'exclusive',
      this.log,
      cursor,
      this.logger,
      // A reader never acknowledges: tracking its deliveries as unacknowledged would only grow.
      { ...DEFAULT_SUBSCRIPTION_OPTIONS, partition: this.name.partition, ackOnDelivery: true },
      this.deliveryCounters,
    );
    this.readers.add(sub);
    return { subscription: sub, start: resolved };
  }

  async closeReader(sub: Subscription): Promise<void> {
    if (!this.readers.delete(sub)) return;
    await sub.close();
  }

  /** Durable subscription names (opened or not). */
  subscriptionNames(): string[] {
    const names = new Set(this.log.cursors().map((c) => c.name));
    for (const n of this.subscriptions.keys()) names.add(n);
    return [...names].filter((n) => !isInternalCursor(n)).sort();
  }

  async createSubscription(name: string, initial: 'earliest' | 'latest'): Promise<void> {
    this.checkOpen();
    await this.log.openCursor(name, initial);
  }

  async deleteSubscription(name: string, force: boolean): Promise<void> {
    this.checkOpen();
    if (isInternalCursor(name)) {
      // The dedup snapshot's cursor keeps the entries it replays from being trimmed.
      throw new InvalidArgumentError(
        `'${name}' is an internal cursor of topic '${this.name.full}', not a subscription; it cannot be deleted (subscription names do not start with '__')`,
      );
    }
    const sub = this.subscriptions.get(name);
    if (!sub && !this.log.cursors().some((c) => c.name === name)) {
      throw new NotFoundError(`subscription '${name}' does not exist on topic '${this.name.full}'`);
    }
    if (sub) {
      if (sub.consumerCount() > 0 && !force) {
        throw new FailedPreconditionError(
          `subscription '${name}' has ${sub.consumerCount()} consumer(s) attached; disconnect them or delete with force`,
        );
      }
      for (const c of [...sub.consumerList()])
        c.sink.close(new ClosedError(`subscription '${name}' was deleted`));
      await sub.close();
      this.subscriptions.delete(name);
    }
    await this.log.deleteCursor(name);
  }

  /** Publish time of an entry (seek by time reads it from the envelope). */
  async seekByTime(time: number): Promise<Position> {
    return this.log.seekByTime(time, envelopePublishTime);
  }

  private checkOpen(): void {
    if (this.closed)
      throw new ClosedError(`topic '${this.name.full}' is closed on this broker; look it up again`);
  }

  /** Close: end every stream (clients reconnect and look up), persist cursors and dedup state when possible. */
  async close(reason: unknown, graceful: boolean): Promise<void> {
    if (this.closed) return;
    await this.stopServing(reason);
    if (graceful && !this.log.fenced) {
      await this.dedup
        .close()
        .catch((err) => this.logger.warn({ err, topic: this.name.full }, 'dedup snapshot failed on close'));
    }
    await this.log
      .close()
      .catch((err) => this.logger.warn({ err, topic: this.name.full }, 'log close failed'));
  }

  async deleteData(): Promise<void> {
    if (this.closed)
      throw new ClosedError(`topic '${this.name.full}' is closed on this broker; look it up again`);
    await this.stopServing(new ClosedError(`topic '${this.name.full}' was deleted`));
    await this.log.delete();
    await this.store.delete(dedupKey(this.name.path));
  }

  /** Mark closed and end every producer, consumer and waiter (close and delete alike). */
  private async stopServing(reason: unknown): Promise<void> {
    this.closed = true;
    this.releaseWaiters(reason);
    for (const p of [...this.producers.values()]) p.kick(reason);
    this.producers.clear();
    await this.closeSubscriptions(reason);
  }

  /** Fail held and rate-limited sends and wake waiting producers: the topic is going away. */
  private releaseWaiters(reason: unknown): void {
    const err = reason instanceof Error ? reason : new ClosedError(String(reason));
    this.rateLimiter.close(err);
    for (const h of this.held) {
      clearTimeout(h.timer);
      h.reject(err);
    }
    this.held.clear();
    for (const wake of [...this.producerLeft]) wake();
  }

  private async closeSubscriptions(reason: unknown): Promise<void> {
    const all = [...this.subscriptions.values(), ...this.readers];
    for (const sub of all) {
      for (const c of [...sub.consumerList()]) c.sink.close(reason);
    }
    await Promise.all(all.map((s) => s.close().catch(() => undefined)));
    this.subscriptions.clear();
    this.readers.clear();
  }

  /** Refresh `rates` from the totals since the previous call. */
  sampleRates(now: number): void {
    const dt = (now - this.lastSample.at) / 1000;
    if (dt <= 0) return;
    const subOut = new Map<string, number>();
    const subTotals = new Map<string, number>();
    for (const [name, sub] of this.subscriptions) {
      subTotals.set(name, sub.messagesOut);
      subOut.set(name, (sub.messagesOut - (this.lastSample.subOut.get(name) ?? 0)) / dt);
    }
    this.rates = {
      msgIn: (this.msgIn - this.lastSample.msgIn) / dt,
      bytesIn: (this.bytesIn - this.lastSample.bytesIn) / dt,
      msgOut: (this.msgOut - this.lastSample.msgOut) / dt,
      bytesOut: (this.bytesOut - this.lastSample.bytesOut) / dt,
      subOut,
    };
    this.lastSample = {
      at: now,
      msgIn: this.msgIn,
      bytesIn: this.bytesIn,
      msgOut: this.msgOut,
      bytesOut: this.bytesOut,
      subOut: subTotals,
    };
  }

  static readonly dedupCursorName = DEDUP_CURSOR;
}
