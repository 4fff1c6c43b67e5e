import { CorruptDataError, type LedgerId, NotFoundError, type Position } from '@sluice/common';
import type { LedgerWriter } from '@sluice/ledger';
import { AckSet } from './ack-set.js';
import {
  type CursorState,
  chunkRecord,
  decodeCursorState,
  encodeCursorState,
  parseChunk,
} from './cursor-state.js';
import { casPut, isBadVersion, isOutcomeUnknown } from './ledger-list.js';
import type { LogContext } from './log-context.js';
import { cursorKey, ledgerCustom } from './log-keys.js';

/** `cursors/<log>/<name>` in metadata. */
interface CursorSnapshot {
  format: 1;
  /** Ledger holding state records newer than (or equal to) the inline state. */
  cursorLedgerId?: LedgerId;
  /** Sequence number of the inline state (or of the last record at close). */
  seq: number;
  markDelete: Position;
  /** Full state inline (base64) when small: written at create and close. */
  state?: string;
}

/** State inline in metadata up to this size; larger states live only in the cursor ledger. */
const INLINE_STATE_BYTES = 64 * 1024;

export interface LoadedCursor {
  state: CursorState;
  seq: number;
}

/**
 * Persistence of one cursor: every flush appends the full state as a record
 * to the cursor ledger; the metadata snapshot names that ledger and is
 * rewritten (CAS) only when the cursor ledger rolls over, at create and at
 * close — never once per ack. Opening a cursor recovers (fences) its ledger,
 * so a stale owner's later flushes fail and it learns it lost the log.
 */
export class CursorStore {
  private version = 0;
  private seq = 0;
  private writer: LedgerWriter | undefined;
  /** A snapshot whose write may have landed unseen (the put and the read-back both failed). */
  private unsure: Buffer | undefined;
  private writerRecords = 0;
  /** Ledger the snapshot names and that a new cursor ledger supersedes. */
  private snapshotLedger: LedgerId | undefined;

  constructor(
    private readonly ctx: LogContext,
    readonly name: string,
  ) {}

  get ledgerId(): LedgerId | undefined {
    return this.writer?.ledgerId ?? this.snapshotLedger;
  }

  private key(): string {
    return cursorKey(this.ctx.name, this.name);
  }

  private what(): string {
    return `cursor '${this.name}' of log '${this.ctx.name}'`;
  }

  /** Load the persisted cursor; undefined when it does not exist. */
  async load(): Promise<LoadedCursor | undefined> {
    const v = await this.ctx.metadata.get(this.key());
    if (!v) return undefined;
    this.version = v.version;
    let snap: CursorSnapshot;
    try {
      snap = JSON.parse(v.value.toString('utf8')) as CursorSnapshot;
    } catch (err) {
      throw new CorruptDataError(`snapshot of ${this.what()} is not valid JSON`, { cause: err });
    }
    let best: LoadedCursor | undefined;
    if (snap.state !== undefined) {
      best = {
        state: await decodeCursorState(Buffer.from(snap.state, 'base64'), `inline state of ${this.what()}`),
        seq: snap.seq,
      };
    }
    this.snapshotLedger = snap.cursorLedgerId;
    if (snap.cursorLedgerId !== undefined) {
      const fromLedger = await this.readLastRecord(snap.cursorLedgerId);
      if (fromLedger && (!best || fromLedger.seq >= best.seq)) best = fromLedger;
    }
    if (!best) {
      // Only reachable when the cursor ledger was lost: fall back to the mark-delete, redelivering above it.
      this.ctx.logger.warn(
        { log: this.ctx.name, cursor: this.name },
        'cursor ledger has no state; using mark-delete',
      );
      best = {
        state: { markDelete: snap.markDelete, acks: new AckSet(), batches: new Map() },
        seq: snap.seq,
      };
    }
    this.seq = best.seq;
    return best;
  }

  private async readLastRecord(ledgerId: LedgerId): Promise<LoadedCursor | undefined> {
    let reader: Awaited<ReturnType<LogContext['ledgers']['openLedger']>>;
    try {
      reader = await this.ctx.ledgers.openLedger(ledgerId, { recover: true });
    } catch (err) {
      if (err instanceof NotFoundError || (err as { code?: string })?.code === 'NOT_FOUND') return undefined;
      throw err;
    }
    try {
      let end = reader.lastAddConfirmed;
      while (end >= 0) {
        const [last] = await reader.read(end, end);
        const chunk = parseChunk(last!.payload, `record ${end} of cursor ledger ${ledgerId}`);
        if (chunk.index !== chunk.count - 1) {
          // A record cut short by a crash: the complete one before it counts.
          end -= chunk.index + 1;
          continue;
        }
        const first = end - chunk.count + 1;
        if (first < 0) return undefined;
        const entries = chunk.count === 1 ? [last!] : await reader.read(first, end);
        const bodies = entries.map((x, i) => {
          const c = parseChunk(x.payload, `record ${first + i} of cursor ledger ${ledgerId}`);
          if (c.seq !== chunk.seq || c.index !== i) {
            throw new CorruptDataError(`cursor ledger ${ledgerId} has interleaved records at ${first + i}`);
          }
          return c.body;
        });
        return {
          state: await decodeCursorState(Buffer.concat(bodies), `state ${chunk.seq} of ${this.what()}`),
          seq: chunk.seq,
        };
      }
      return undefined;
    } finally {
      await reader.close().catch(() => undefined);
    }
  }

  /** Create the snapshot of a new cursor (fails if it exists). */
  async create(state: CursorState): Promise<void> {
    this.seq = 1;
    const snap: CursorSnapshot = {
      format: 1,
      seq: this.seq,
      markDelete: state.markDelete,
      state: (await encodeCursorState(state)).toString('base64'),
    };
    this.version = await this.ctx.metadata.put(this.key(), Buffer.from(JSON.stringify(snap)), {
      createOnly: true,
    });
  }

  /** Append the full state to the cursor ledger (rolling it when needed). */
  async persist(state: CursorState): Promise<void> {
    const seq = ++this.seq;
    const chunks = chunkRecord(seq, await encodeCursorState(state));
    if (!this.writer || this.writerRecords + 1 > this.ctx.config.cursorLedgerMaxEntries) {
      await this.roll(chunks, state.markDelete, seq);
      return;
    }
    try {
      await Promise.all(chunks.map((c) => this.writer!.addEntry(c)));
      this.writerRecords++;
    } catch (err) {
      // Next flush starts a fresh cursor ledger; this one stays readable until superseded.
      this.ctx.logger.warn({ log: this.ctx.name, cursor: this.name, err }, 'cursor ledger write failed');
      this.writer = undefined;
      throw err;
    }
  }

  private async roll(chunks: Buffer[], markDelete: Position, seq: number): Promise<void> {
    const c = this.ctx.config;
    const w = await this.ctx.ledgers.createLedger({
      ensembleSize: c.ensembleSize,
      writeQuorum: c.writeQuorum,
      ackQuorum: c.ackQuorum,
      custom: ledgerCustom(this.ctx.name, 'cursor', this.name),
    });
    try {
      await Promise.all(chunks.map((x) => w.addEntry(x)));
      await this.writeSnapshot({ format: 1, cursorLedgerId: w.ledgerId, seq, markDelete });
    } catch (err) {
      await w.close().catch(() => undefined);
      // The snapshot may name `w` (its write may have landed unseen): keep
      // the ledger then; the orphan sweeper deletes it once nothing names it.
      if (!isOutcomeUnknown(err)) await this.ctx.ledgers.deleteLedger(w.ledgerId).catch(() => undefined);
      throw err;
    }
    const old = this.writer;
    const oldId = this.snapshotLedger;
    this.writer = w;
    this.writerRecords = 1;
    this.snapshotLedger = w.ledgerId;
    if (old) await old.close().catch(() => undefined);
    if (oldId !== undefined && oldId !== w.ledgerId) {
      // The snapshot no longer names it; a failure here leaves it to the orphan sweeper.
      await this.ctx.ledgers.deleteLedger(oldId).catch((err) => {
        this.ctx.logger.warn(
          { log: this.ctx.name, ledgerId: oldId, err },
          'deleting old cursor ledger failed',
        );
      });
    }
  }

  private async writeSnapshot(snap: CursorSnapshot): Promise<void> {
    const value = Buffer.from(JSON.stringify(snap));
    try {
      this.version = await casPut(this.ctx.metadata, this.key(), value, this.version);
      this.unsure = undefined;
    } catch (err) {
      if (isBadVersion(err)) {
        // Our own earlier write whose answer was lost moved the version on.
        const current = this.unsure && (await this.ctx.metadata.get(this.key()));
        if (current && this.unsure?.equals(current.value)) {
          this.version = current.version;
          this.unsure = undefined;
          return this.writeSnapshot(snap);
        }
        this.ctx.markFenced();
        throw this.ctx.fencedError(err);
      }
      if (isOutcomeUnknown(err)) this.unsure = value;
      throw err;
    }
  }

  private async deleteSnapshot(): Promise<void> {
    try {
      await this.ctx.metadata.delete(this.key(), { expectedVersion: this.version });
    } catch (err) {
      if (!isBadVersion(err)) throw err;
      const current = await this.ctx.metadata.get(this.key());
      // Already gone (an earlier attempt whose answer was lost).
      if (!current) return;
      if (this.unsure?.equals(current.value)) {
        // Our own earlier write whose answer was lost moved the version on.
        this.version = current.version;
        this.unsure = undefined;
        return this.deleteSnapshot();
      }
      this.ctx.markFenced();
      throw this.ctx.fencedError(err);
    }
  }

  /** Final state: close the cursor ledger and write the snapshot (inline when small). */
  async close(state: CursorState): Promise<void> {
    const seq = ++this.seq;
    const encoded = await encodeCursorState(state);
    const inline = encoded.length <= INLINE_STATE_BYTES;
    if (!inline) {
      // Large states live in the ledger; make sure the last one is there.
      this.seq--;
      await this.persist(state);
    }
    if (this.writer) await this.writer.close().catch(() => undefined);
    const snap: CursorSnapshot = { format: 1, seq: this.seq, markDelete: state.markDelete };
    if (this.ledgerId !== undefined) snap.cursorLedgerId = this.ledgerId;
    if (inline) {
      snap.seq = seq;
      snap.state = encoded.toString('base64');
    }
    this.writer = undefined;
    await this.writeSnapshot(snap);
  }

  /**
   * Remove the cursor's snapshot and ledger. Only the owner may: a fenced
   * log refuses, and the snapshot goes only while it is at the version this
   * store last read or wrote (else another owner rewrote it: FencedError).
   */
  async destroy(): Promise<void> {
    if (this.ctx.fenced) throw this.ctx.fencedError();
    const ids = new Set<LedgerId>();
    if (this.writer) ids.add(this.writer.ledgerId);
    if (this.snapshotLedger !== undefined) ids.add(this.snapshotLedger);
    if (this.writer) await this.writer.close().catch(() => undefined);
    this.writer = undefined;
    await this.deleteSnapshot();
    for (const id of ids) {
      await this.ctx.ledgers.deleteLedger(id).catch((err) => {
        this.ctx.logger.warn({ log: this.ctx.name, ledgerId: id, err }, 'deleting cursor ledger failed');
      });
    }
  }
}
