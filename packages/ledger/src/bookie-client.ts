/**
 * What the ledger client needs from one bookie. Two implementations: gRPC
 * (`GrpcBookieClient`, one long-lived AddEntries stream per bookie) and
 * in-memory (`MemoryBookie`, with fault injection for tests).
 *
 * Entry-level outcomes come back as a status; transport failures (bookie
 * down, stream broken, timeout) reject with a SluiceError.
 */
import type { BookieId, EntryId, LedgerId } from '@sluice/common';
import type { EntryStatusName } from '@sluice/proto';

export type EntryStatus = EntryStatusName;

/** One entry as replicated: the writer computes crc32c and ledgerLength. */
export interface WireEntry {
  ledgerId: LedgerId;
  entryId: EntryId;
  /** LAC known to the writer when the entry was sent (-1: none). */
  lac: EntryId;
  payload: Buffer;
  crc32c: number;
  /** Payload bytes of the ledger up to and including this entry. */
  ledgerLength: number;
}

export interface AddOutcome {
  status: EntryStatus;
  message?: string;
}

export interface ReadOutcome {
  status: EntryStatus;
  /** Set only when status is OK. */
  entry?: WireEntry;
  /** Highest LAC the bookie knows (-1: none). */
  lac: EntryId;
  message?: string;
}

export interface LacOutcome {
  status: EntryStatus;
  lac: EntryId;
  /** Highest entry id stored (-1: none). */
  lastEntryId: EntryId;
}

export interface RangeOutcome {
  /** Consecutive entries from `first`, ascending. */
  entries: WireEntry[];
  /** Why the range ended before `last`, if it did. */
  stoppedBy?: EntryStatus;
}

export interface BookieClient {
  readonly bookieId: BookieId;
  /** Persist one entry; resolves once fsynced (or refused). `recovery` adds pass fences. */
  add(entry: WireEntry, recovery?: boolean): Promise<AddOutcome>;
  /** Read one entry; `fence` fences the ledger first (recovery reads). */
  read(ledgerId: LedgerId, entryId: EntryId, fence?: boolean): Promise<ReadOutcome>;
  /** Read first..last in order; may stop early (see `stoppedBy`). */
  readRange(ledgerId: LedgerId, first: EntryId, last: EntryId): Promise<RangeOutcome>;
  readLac(ledgerId: LedgerId, fence?: boolean): Promise<LacOutcome>;
  fence(ledgerId: LedgerId): Promise<LacOutcome>;
  close(): Promise<void>;
}

/** Resolves a bookie id to a client (connecting on first use). */
export interface BookieClientPool {
  get(bookieId: BookieId): BookieClient;
  close(): Promise<void>;
}
