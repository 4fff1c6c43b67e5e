import { comparePositions, OutOfRangeError, type Position, silentLogger } from '@sluice/common';
import type { Cursor, LogEntry, LogStats, ManagedLog } from '@sluice/managed-log';
import type { MetadataStore } from '@sluice/metadata';
import { encodeEnvelope } from '../entry-envelope.js';
import { NonDurableCursor } from '../non-durable-cursor.js';
import { defaultPolicies } from '../policies.js';
import { Topic } from '../topic.js';
import { parseTopicName } from '../topic-name.js';

/**
 * An in-memory managed log for unit tests: one ledger (id 1), cursors held in
 * memory, appends that a test can hold back and fail one by one.
 */
export class MemoryLog {
  readonly name = 'memory';
  readonly entries: LogEntry[] = [];
  fenced = false;
  private readonly cursorMap = new Map<string, Cursor>();
  private waiters: (() => void)[] = [];
  /** When set, appends wait until a test settles them through `held`. */
  holdAppends = false;
  readonly held: { payload: Buffer; resolve: () => void; reject: (err: Error) => void }[] = [];
  /** Reads that throw once, one per call, before real reads resume. */
  readonly readFailures: Error[] = [];

  asLog(): ManagedLog {
    return this as unknown as ManagedLog;
  }

  append(payload: Buffer): Promise<Position> {
    if (!this.holdAppends) return Promise.resolve(this.store(payload));
    return new Promise<Position>((resolve, reject) => {
      this.held.push({ payload, resolve: () => resolve(this.store(payload)), reject });
    });
  }

  private store(payload: Buffer): Position {
    const position = { ledgerId: 1, entryId: this.entries.length };
    this.entries.push({ position, payload });
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
    return position;
  }

  lastPosition(): Position | undefined {
    return this.entries[this.entries.length - 1]?.position;
  }

  firstPosition(): Position | undefined {
    return this.entries[this.trimmedBefore]?.position;
  }

  /** Entries below this id were trimmed: reads of them fail with OUT_OF_RANGE, as the managed log's do. */
  private trimmedBefore = 0;

  /** Drop entries 0..entryId-1 as retention would (here within the one ledger). */
  trimTo(entryId: number): void {
    this.trimmedBefore = Math.max(this.trimmedBefore, entryId);
  }

  /** Delay of every read, to let a test act while a read is outstanding. */
  readDelayMs = 0;

  async read(from: Position, maxEntries: number): Promise<LogEntry[]> {
    if (this.readDelayMs > 0) await new Promise((r) => setTimeout(r, this.readDelayMs));
    const fail = this.readFailures.shift();
    if (fail) throw fail;
    const start = from.ledgerId < 1 ? 0 : from.entryId;
    if (start < this.trimmedBefore) {
      throw new OutOfRangeError(
        `position ${from.ledgerId}:${from.entryId} was trimmed; the first stored entry is 1:${this.trimmedBefore}`,
      );
    }
    return this.entries.slice(start, start + maxEntries);
  }

  nextPosition(p: Position): Position | undefined {
    const next = Math.max(this.trimmedBefore, p.ledgerId < 1 ? 0 : p.entryId + 1);
    return next < this.entries.length ? { ledgerId: 1, entryId: next } : undefined;
  }

  onEntryAfter(p: Position | undefined, fn: () => void): () => void {
    const last = this.lastPosition();
    if (last && (!p || comparePositions(last, p) > 0)) {
      fn();
      return () => {};
    }
    let live = true;
    this.waiters.push(() => {
      if (live) fn();
    });
    return () => {
      live = false;
    };
  }

  async openCursor(name: string, initial: 'earliest' | 'latest' = 'latest'): Promise<Cursor> {
    let c = this.cursorMap.get(name);
    if (!c) {
      const start = NonDurableCursor.startPosition(this.asLog(), initial, name);
      c = new NonDurableCursor(name, this.asLog(), start);
      this.cursorMap.set(name, c);
    }
    return c;
  }

  async deleteCursor(name: string): Promise<void> {
    this.cursorMap.delete(name);
  }

  cursors(): Cursor[] {
    return [...this.cursorMap.values()];
  }

  entriesAfter(p: Position): number {
    return p.ledgerId < 1 ? this.entries.length : Math.max(0, this.entries.length - 1 - p.entryId);
  }

  stats(): LogStats {
    return {
      entries: this.entries.length,
      storageBytes: 0,
      offloadedBytes: 0,
      ledgers: [
        {
          ledgerId: 1,
          entries: this.entries.length,
          size: 0,
          ctime: 0,
          offloaded: false,
          bookieCopyDeleted: false,
          open: true,
        },
      ],
      cursors: [],
    };
  }

  async trim(): Promise<number> {
    return 0;
  }

  /** Set by `delete` (the topic's data was deleted). */
  deleted = false;

  async delete(): Promise<void> {
    this.deleted = true;
  }

  async close(): Promise<void> {}
}

/** A metadata store holding plain values in a map (get / put / delete only). */
export function memoryStore(): MetadataStore & { values: Map<string, Buffer> } {
  const values = new Map<string, Buffer>();
  const store = {
    values,
    async get(key: string) {
      const value = values.get(key);
      return value ? { key, value, version: 1 } : undefined;
    },
    async put(key: string, value: Buffer) {
      values.set(key, value);
      return 1;
    },
    async delete(key: string) {
      values.delete(key);
    },
  };
  return store as unknown as MetadataStore & { values: Map<string, Buffer> };
}

/** A stored batch envelope with a key, for dispatch tests. */
export function batchEntry(count: number, opts: { key?: string; deliverAt?: number } = {}): Buffer {
  return encodeEnvelope(
    {
      publishTime: Date.now(),
      producerName: 'p',
      firstSequenceId: 0,
      count,
      codec: 0,
      uncompressedSize: 1,
      deliverAt: opts.deliverAt ?? 0,
      key: opts.key ?? '',
    },
    Buffer.from('x'),
  );
}

/** A topic over `log` with default single-bookie policies, a memory metadata store and a silent logger. */
export function openMemoryTopic(name: string, log: MemoryLog = new MemoryLog()): Promise<Topic> {
  return Topic.open(
    parseTopicName(name),
    log.asLog(),
    memoryStore(),
    defaultPolicies({ ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 }),
    silentLogger,
    undefined,
    () => undefined,
  );
}
