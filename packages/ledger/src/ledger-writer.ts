/**
 * The single writer of an OPEN ledger: a pending-add queue in entry order,
 * striped over the last segment's ensemble, completed in order once Qa
 * bookies of an entry's write set have fsynced it.
 *
 * States: open → closing → closed, or → failed; while open, at most one
 * ensemble change runs at a time (the `changing` flag).
 * - A bookie error or timeout starts an ensemble change: the failed bookie
 *   is replaced, a segment from LAC+1 is CASed into the metadata and the
 *   pending adds are re-sent. While it runs nothing completes past the LAC it
 *   started from, so every acknowledged entry has Qa copies in the segment
 *   the metadata assigns it to.
 * - FENCED from any bookie means a newer writer recovered the ledger: every
 *   pending and later add fails with FencedError.
 * - No replacement (or too many changes): pending adds fail with
 *   UnavailableError; acknowledged entries stay on Qa bookies untouched.
 */
import {
  asSluiceError,
  BadVersionError,
  type BookieId,
  backoffDelay,
  ClosedError,
  crc32c,
  type EntryId,
  FencedError,
  InvalidArgumentError,
  isRetriable,
  type Logger,
  type SluiceError,
  systemClock,
  UnavailableError,
} from '@sluice/common';
import type { PartedWireEntry } from './add-request-encoder.js';
import type { LedgerMetadata, LedgerWriter } from './api.js';
import type { AddOutcome, BookieClientPool } from './bookie-client.js';
import type { BookieDirectory } from './bookie-directory.js';
import {
  encodeMetadata,
  type LedgerMetadataStore,
  type VersionedMetadata,
  writeSet,
} from './ledger-metadata-store.js';
import type { PlacementPolicy } from './placement-policy.js';

export interface LedgerWriterOptions {
  /** Max adds in flight (sent, not yet acknowledged); more wait. */
  maxPendingAdds?: number;
  /** Max payload bytes in flight; more wait. */
  maxPendingBytes?: number;
  /** Ensemble changes one writer may make before giving up with UNAVAILABLE. */
  maxEnsembleChanges?: number;
  /** Largest payload accepted (the bookie and gRPC limits sit above it). */
  maxEntryBytes?: number;
}

/**
 * Largest entry payload a ledger writer accepts unless its client sets
 * `maxEntryBytes`: a 5 MiB message plus 64 KiB for the broker's entry
 * framing. Anything that accepts data bound for a ledger (the managed log's
 * append, the broker's max message size) caps itself at this value.
 */
export const MAX_ENTRY_BYTES = 5 * 1024 * 1024 + 64 * 1024;

/** The refusal of one entry over `maxEntryBytes`; the ledger stays usable for later adds. */
export function entryTooLarge(bytes: number, maxEntryBytes: number): InvalidArgumentError {
  return new InvalidArgumentError(
    `entry of ${bytes} bytes exceeds the limit of ${maxEntryBytes} bytes; split it`,
    {
      details: { entryBytes: String(bytes), maxEntryBytes: String(maxEntryBytes) },
    },
  );
}

/**
 * True for `entryTooLarge` refusals: only that add failed, not the ledger
 * (other InvalidArgumentErrors, say from a metadata write, fail the writer).
 */
export function isEntryTooLarge(err: unknown): boolean {
  const e = err as { code?: string; details?: Record<string, string> } | undefined;
  return e?.code === 'INVALID_ARGUMENT' && e.details?.maxEntryBytes !== undefined;
}

export const DEFAULT_WRITER_OPTIONS: Required<LedgerWriterOptions> = {
  maxPendingAdds: 1000,
  maxPendingBytes: 64 * 1024 * 1024,
  maxEnsembleChanges: 16,
  maxEntryBytes: MAX_ENTRY_BYTES,
};

export interface WriterDeps {
  metadata: LedgerMetadataStore;
  pool: BookieClientPool;
  directory: BookieDirectory;
  placement: PlacementPolicy;
  logger: Logger;
  onEnsembleChange?: () => void;
  /** Called once per acknowledged add with its latency in seconds and size. */
  onAddAcknowledged?: (seconds: number, bytes: number) => void;
}

interface PendingAdd {
  entryId: EntryId;
  /** The payload as the caller gave it; joined only if a bookie client needs one Buffer. */
  parts: readonly Buffer[];
  bytes: number;
  joined: Buffer | undefined;
  crc: number;
  ledgerLength: number;
  acked: Set<BookieId>;
  inflight: Set<BookieId>;
  admittedAt: number;
  resolve: (id: EntryId) => void;
  reject: (err: Error) => void;
}

interface WaitingAdd {
  parts: readonly Buffer[];
  bytes: number;
  resolve: (id: EntryId) => void;
  reject: (err: Error) => void;
}

type WriterState = 'open' | 'closing' | 'closed' | 'failed';

/**
 * An add as one send hands it to every bookie of its write set. gRPC clients
 * encode `payloadParts` as they are; in-process bookies (standalone, tests)
 * read `payload`, which joins the parts once per entry, on first use. The
 * pending add is a #private field so that spreading the entry (as stores do)
 * copies the entry's fields only.
 */
class OutgoingEntry implements PartedWireEntry {
  readonly #add: PendingAdd;
  readonly entryId: EntryId;
  readonly crc32c: number;
  readonly ledgerLength: number;

  constructor(
    readonly ledgerId: number,
    readonly lac: EntryId,
    add: PendingAdd,
  ) {
    this.#add = add;
    this.entryId = add.entryId;
    this.crc32c = add.crc;
    this.ledgerLength = add.ledgerLength;
  }

  get payload(): Buffer {
    const add = this.#add;
    add.joined ??= add.parts.length === 1 ? (add.parts[0] as Buffer) : Buffer.concat(add.parts, add.bytes);
    return add.joined;
  }

  get payloadParts(): readonly Buffer[] {
    return this.#add.parts;
  }

  get payloadLength(): number {
    return this.#add.bytes;
  }
}

export class ReplicatedLedgerWriter implements LedgerWriter {
  readonly ledgerId: number;
  private vm: VersionedMetadata;
  private state: WriterState = 'open';
  private changing = false;
  private error: SluiceError | undefined;
  private readonly opts: Required<LedgerWriterOptions>;
  private readonly pending: PendingAdd[] = [];
  private readonly waiting: WaitingAdd[] = [];
  private pendingBytes = 0;
  private nextEntryId = 0;
  private lengthAssigned = 0;
  private lac: EntryId = -1;
  private ackedLength = 0;
  /** Bookies of the current ensemble that failed and await replacement. */
  private readonly failed = new Set<BookieId>();
  /** Every bookie that ever failed this writer; never chosen again. */
  private readonly everFailed = new Set<BookieId>();
  private changes = 0;
  private drained: (() => void) | undefined;
  private closePromise: Promise<LedgerMetadata> | undefined;

  constructor(
    private readonly deps: WriterDeps,
    vm: VersionedMetadata,
    opts: LedgerWriterOptions = {},
  ) {
    this.vm = vm;
    this.ledgerId = vm.metadata.ledgerId;
    this.opts = { ...DEFAULT_WRITER_OPTIONS, ...opts };
  }

  get metadata(): LedgerMetadata {
    return this.vm.metadata;
  }

  get lastAddConfirmed(): EntryId {
    return this.lac;
  }

  get length(): number {
    return this.ackedLength;
  }

  addEntry(payload: Buffer | readonly Buffer[]): Promise<EntryId> {
    if (this.error) return Promise.reject(this.error);
    if (this.state === 'closing' || this.state === 'closed') {
      return Promise.reject(
        new ClosedError(`ledger ${this.ledgerId} is closed for writing; create a new ledger`),
      );
    }
    const parts = Buffer.isBuffer(payload) ? [payload] : [...payload];
    let bytes = 0;
    for (const part of parts) bytes += part.length;
    if (bytes > this.opts.maxEntryBytes) {
      return Promise.reject(entryTooLarge(bytes, this.opts.maxEntryBytes));
    }
    return new Promise<EntryId>((resolve, reject) => {
      const req: WaitingAdd = { parts, bytes, resolve, reject };
      // FIFO: a caller may not overtake one already waiting for the window.
      if (this.waiting.length > 0 || this.windowFull(bytes)) this.waiting.push(req);
      else this.admit(req);
    });
  }

  close(): Promise<LedgerMetadata> {
    this.closePromise ??= this.doClose();
    return this.closePromise;
  }

  private windowFull(bytes: number): boolean {
    if (this.pending.length === 0) return false;
    return (
      this.pending.length >= this.opts.maxPendingAdds || this.pendingBytes + bytes > this.opts.maxPendingBytes
    );
  }

  private admit(req: WaitingAdd): void {
    this.lengthAssigned += req.bytes;
    let crc = 0;
    for (const part of req.parts) crc = crc32c(part, crc);
    const p: PendingAdd = {
      entryId: this.nextEntryId++,
      parts: req.parts,
      bytes: req.bytes,
      joined: undefined,
      crc,
      ledgerLength: this.lengthAssigned,
      acked: new Set(),
      inflight: new Set(),
      admittedAt: performance.now(),
      resolve: req.resolve,
      reject: req.reject,
    };
    this.pending.push(p);
    this.pendingBytes += p.bytes;
    if (!this.changing) this.send(p);
  }

  private admitWaiting(): void {
    while (this.waiting.length > 0 && !this.error) {
      const next = this.waiting[0] as WaitingAdd;
      if (this.windowFull(next.bytes)) return;
      this.waiting.shift();
      this.admit(next);
    }
  }

  private get ensemble(): BookieId[] {
    return (this.vm.metadata.segments.at(-1) as { bookies: BookieId[] }).bookies;
  }

  private writeSetOf(entryId: EntryId): BookieId[] {
    return writeSet(this.ensemble, this.vm.metadata.writeQuorum, entryId);
  }

  private send(p: PendingAdd): void {
    // One object for the whole write set: bookie clients encode it once and share the bytes.
    let entry: OutgoingEntry | undefined;
    for (const b of this.writeSetOf(p.entryId)) {
      if (p.acked.has(b) || p.inflight.has(b) || this.failed.has(b)) continue;
      p.inflight.add(b);
      entry ??= new OutgoingEntry(this.ledgerId, this.lac, p);
      this.deps.pool
        .get(b)
        .add(entry)
        .then(
          (outcome) => this.onAddResult(p, b, outcome),
          (err: unknown) =>
            this.onAddResult(p, b, { status: 'IO_ERROR', message: asSluiceError(err).message }),
        );
    }
  }

  private onAddResult(p: PendingAdd, bookie: BookieId, outcome: AddOutcome): void {
    p.inflight.delete(bookie);
    if (this.error || this.pending[0] === undefined || p.entryId < (this.pending[0] as PendingAdd).entryId)
      return;
    if (outcome.status === 'OK') {
      // A late answer from a bookie that was replaced does not count.
      if (this.failed.has(bookie) || !this.writeSetOf(p.entryId).includes(bookie)) return;
      p.acked.add(bookie);
      this.completeInOrder();
      return;
    }
    if (outcome.status === 'FENCED') {
      this.fail(
        new FencedError(
          `ledger ${this.ledgerId} was fenced by a newer writer (bookie ${bookie}); this writer can no longer add`,
        ),
      );
      return;
    }
    this.deps.logger.warn(
      {
        ledgerId: this.ledgerId,
        entryId: p.entryId,
        bookie,
        status: outcome.status,
        reason: outcome.message,
      },
      'add failed on bookie; changing ensemble',
    );
    this.bookieFailed(bookie);
  }

  private completeInOrder(): void {
    const qa = this.vm.metadata.ackQuorum;
    while (!this.changing && this.pending.length > 0) {
      const head = this.pending[0] as PendingAdd;
      if (head.acked.size < qa) break;
      this.pending.shift();
      this.pendingBytes -= head.bytes;
      this.lac = head.entryId;
      this.ackedLength = head.ledgerLength;
      this.deps.onAddAcknowledged?.((performance.now() - head.admittedAt) / 1000, head.bytes);
      head.resolve(head.entryId);
    }
    this.admitWaiting();
    this.checkDrained();
  }

  private bookieFailed(bookie: BookieId): void {
    if (this.failed.has(bookie) || !this.ensemble.includes(bookie)) return;
    this.failed.add(bookie);
    this.everFailed.add(bookie);
    // Its copies of entries above the LAC are not in the segment that will hold them.
    for (const p of this.pending) p.acked.delete(bookie);
    if (!this.changing && this.state !== 'closed') {
      this.changing = true;
      this.changeEnsemble().then(
        () => {
          this.changing = false;
          for (const p of this.pending) this.send(p);
          this.completeInOrder();
        },
        (err: unknown) => {
          this.changing = false;
          this.fail(asSluiceError(err));
        },
      );
    }
  }

  private async changeEnsemble(): Promise<void> {
    while (!this.error && this.ensemble.some((b) => this.failed.has(b))) {
      if (++this.changes > this.opts.maxEnsembleChanges) {
        throw new UnavailableError(
          `ledger ${this.ledgerId} changed its ensemble ${this.opts.maxEnsembleChanges} times; giving up (bookies keep failing); roll over to a new ledger`,
        );
      }
      const bookies = await this.deps.directory.list();
      const replaced = [...this.ensemble];
      const nowFailed = replaced.filter((b) => this.failed.has(b));
      for (let i = 0; i < replaced.length; i++) {
        if (!this.failed.has(replaced[i] as BookieId)) continue;
        replaced[i] = this.deps.placement.replaceBookie(replaced, i, bookies, this.everFailed);
      }
      const first = this.lac + 1;
      const applyTo = (m: LedgerMetadata): LedgerMetadata => {
        const last = m.segments.at(-1) as { firstEntryId: number; bookies: BookieId[] };
        const segments =
          last.firstEntryId === first
            ? [...m.segments.slice(0, -1), { firstEntryId: first, bookies: replaced }]
            : [...m.segments, { firstEntryId: first, bookies: replaced }];
        return { ...m, segments };
      };
      this.vm = await this.casMetadata(applyTo);
      for (const b of nowFailed) this.failed.delete(b);
      this.deps.onEnsembleChange?.();
      this.deps.logger.info(
        { ledgerId: this.ledgerId, firstEntryId: first, ensemble: replaced, replaced: nowFailed },
        'ledger ensemble changed',
      );
    }
  }

  /**
   * CAS a change of ours. Someone else may change the metadata of an OPEN
   * ledger only in ways that keep our last segment (the auditor replacing a
   * bookie of an older segment); anything else means we were fenced.
   */
  private async casMetadata(change: (m: LedgerMetadata) => LedgerMetadata): Promise<VersionedMetadata> {
    let base = this.vm;
    for (let attempt = 0; ; attempt++) {
      const next = change(base.metadata);
      try {
        return await this.deps.metadata.write(next, base.version);
      } catch (err) {
        if (attempt >= 10) throw err;
        if (!(err instanceof BadVersionError)) {
          // The metadata store is briefly unreachable: the same CAS is still
          // the right one (if the lost attempt committed, the retry gets
          // BadVersion and the read-back below finds our own change).
          if (!isRetriable(err)) throw err;
          await systemClock.sleep(backoffDelay(attempt, { minDelayMs: 50, maxDelayMs: 2000 }));
          continue;
        }
      }
      const fresh = await this.deps.metadata.readOrThrow(this.ledgerId);
      // Our write landed and only its answer was lost: done, not fenced.
      if (encodeMetadata(fresh.metadata).equals(encodeMetadata(next))) return fresh;
      const ours = JSON.stringify(this.vm.metadata.segments.at(-1));
      if (fresh.metadata.state !== 'OPEN' || JSON.stringify(fresh.metadata.segments.at(-1)) !== ours) {
        throw new FencedError(
          `ledger ${this.ledgerId} is ${fresh.metadata.state} and was changed by another client; this writer can no longer add`,
        );
      }
      base = fresh;
    }
  }

  private fail(err: SluiceError): void {
    if (this.error) return;
    this.error = err;
    if (this.state !== 'closing') this.state = 'failed';
    const pending = this.pending.splice(0);
    const waiting = this.waiting.splice(0);
    this.pendingBytes = 0;
    for (const p of pending) p.reject(err);
    for (const w of waiting) w.reject(err);
    this.checkDrained();
  }

  private checkDrained(): void {
    if (this.drained && this.pending.length === 0 && this.waiting.length === 0) {
      const d = this.drained;
      this.drained = undefined;
      d();
    }
  }

  private async doClose(): Promise<LedgerMetadata> {
    const wasFailed = this.state === 'failed';
    this.state = 'closing';
    if (!wasFailed && (this.pending.length > 0 || this.waiting.length > 0)) {
      await new Promise<void>((resolve) => {
        this.drained = resolve;
      });
    }
    if (this.error instanceof FencedError) throw this.error;
    const lastEntryId = this.lac;
    const length = this.ackedLength;
    let base = this.vm;
    for (let attempt = 0; ; attempt++) {
      try {
        this.vm = await this.deps.metadata.write(
          { ...base.metadata, state: 'CLOSED', lastEntryId, length },
          base.version,
        );
        break;
      } catch (err) {
        if (attempt >= 10) throw err;
        if (!(err instanceof BadVersionError)) {
          if (!isRetriable(err)) throw err;
          await systemClock.sleep(backoffDelay(attempt, { minDelayMs: 50, maxDelayMs: 2000 }));
          continue;
        }
      }
      base = await this.deps.metadata.readOrThrow(this.ledgerId);
      const m = base.metadata;
      if (m.state === 'CLOSED' && m.lastEntryId === lastEntryId) {
        this.vm = base;
        break;
      }
      if (m.state !== 'OPEN') {
        throw new FencedError(
          `ledger ${this.ledgerId} was ${m.state === 'CLOSED' ? `closed at entry ${m.lastEntryId}` : 'put in recovery'} by another client while this writer closed it at ${lastEntryId}`,
        );
      }
    }
    this.state = 'closed';
    this.error ??= new ClosedError(`ledger ${this.ledgerId} is closed for writing; create a new ledger`);
    return this.vm.metadata;
  }
}
