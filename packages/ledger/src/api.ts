/**
 * Public surface of the ledger client (see ../shared DESIGN §4). A ledger is
 * an append-only sequence of entries with exactly one writer, replicated to
 * an ensemble of bookies with write quorum Qw and ack quorum Qa.
 */
import type { BookieId, EntryId, LedgerId } from '@sluice/common';

export type LedgerState = 'OPEN' | 'IN_RECOVERY' | 'CLOSED';

export interface LedgerSegment {
  /** First entry id written to this ensemble. */
  firstEntryId: EntryId;
  /** Ensemble of the segment; entry e goes to bookies[(e + i) mod E], i < Qw. */
  bookies: BookieId[];
}

export interface LedgerMetadata {
  ledgerId: LedgerId;
  ensembleSize: number;
  writeQuorum: number;
  ackQuorum: number;
  state: LedgerState;
  /** Last entry id of a CLOSED ledger; -1 when empty or not closed. */
  lastEntryId: EntryId;
  /** Total payload bytes of a CLOSED ledger. */
  length: number;
  segments: LedgerSegment[];
  /** Creation time, epoch ms. */
  ctime: number;
  /** Free-form properties set by the creator (e.g. the owning topic). */
  custom: Record<string, string>;
}

export interface CreateLedgerOptions {
  ensembleSize: number;
  writeQuorum: number;
  ackQuorum: number;
  custom?: Record<string, string>;
  /**
   * The new ledger's id is greater than this: a log passes its newest
   * ledger's id, since positions along a log compare by ledger id first.
   */
  idAbove?: LedgerId;
}

export interface LedgerEntry {
  ledgerId: LedgerId;
  entryId: EntryId;
  payload: Buffer;
}

/** The single writer of an OPEN ledger. */
export interface LedgerWriter {
  readonly ledgerId: LedgerId;
  readonly metadata: LedgerMetadata;
  /** Highest entry id acknowledged to callers (-1: none). */
  readonly lastAddConfirmed: EntryId;
  /** Payload bytes acknowledged so far. */
  readonly length: number;
  /**
   * Append one entry. Resolves with its entry id once Qa bookies have fsynced
   * it and every lower entry is acknowledged. Back-pressures (resolves later)
   * when the in-flight window is full. Rejects with FencedError when a newer
   * writer fenced the ledger, UnavailableError when no ensemble can be formed.
   * The payload may come in parts (e.g. a header and a body): they are
   * checksummed and sent as one payload without being joined first. Parts
   * must not change until the add settles.
   */
  addEntry(payload: Buffer | readonly Buffer[]): Promise<EntryId>;
  /** Close: CAS the metadata to CLOSED with lastEntryId = lastAddConfirmed. */
  close(): Promise<LedgerMetadata>;
}

/** Reads a ledger: CLOSED ones up to lastEntryId, OPEN ones up to the LAC. */
export interface LedgerReader {
  readonly ledgerId: LedgerId;
  readonly metadata: LedgerMetadata;
  /** Last entry readable now: lastEntryId when closed, else the known LAC. */
  readonly lastAddConfirmed: EntryId;
  /** Entries first..last inclusive, in order; CRC verified. */
  read(first: EntryId, last: EntryId): Promise<LedgerEntry[]>;
  /** Ask the bookies for a newer LAC (tailing an OPEN ledger). */
  refreshLac(): Promise<EntryId>;
  /**
   * The caller knows entries through `entryId` are confirmed: it is the
   * ledger's writer (in this process) and they were acknowledged. Bookies
   * learn the LAC only from later adds, so they lag the writer by its
   * pipeline. Call after `refreshLac`, so that the reader's metadata names
   * the bookies of every such entry. No effect on a CLOSED ledger.
   */
  confirmedThrough(entryId: EntryId): void;
  close(): Promise<void>;
}

export interface OpenLedgerOptions {
  /**
   * Recover: fence the ledger so its writer can never add again, re-replicate
   * the tail and close it. Without it the ledger is opened read-only.
   */
  recover?: boolean;
}

/** Entry point of the ledger client, one per process. */
export interface LedgerClient {
  /**
   * Largest entry payload this client's writers accept; a larger addEntry
   * fails with InvalidArgumentError and leaves the ledger usable. Absent:
   * `MAX_ENTRY_BYTES`.
   */
  readonly maxEntryBytes?: number;
  createLedger(opts: CreateLedgerOptions): Promise<LedgerWriter>;
  openLedger(ledgerId: LedgerId, opts?: OpenLedgerOptions): Promise<LedgerReader>;
  /** Remove the ledger's metadata; bookies garbage-collect its data. Idempotent. */
  deleteLedger(ledgerId: LedgerId): Promise<void>;
  getLedgerMetadata(ledgerId: LedgerId): Promise<LedgerMetadata | undefined>;
  close(): Promise<void>;
}
