/**
 * Turns the adds a GrpcBookieClient batched into AddEntriesRequest bytes with
 * as few encodes and copies as the write path allows:
 *
 * - an entry object handed to several bookies (the writer sends one object
 *   to its whole write set) is encoded once: its head is memoized per object
 *   and its payload Buffers are referenced, not copied;
 * - when E = Qw every bookie gets the same entries in the same tick, so the
 *   request the first bookie's stream serialized is handed to the next ones
 *   as it is (grpc-js copies each message into its own frame and never
 *   changes the Buffer it was given).
 */
import { EncodedEntry, encodeAddEntriesRequest } from '@sluice/proto';
import type { WireEntry } from './bookie-client.js';

/** An entry whose payload may be in parts (header + body) that nobody joined yet. */
export interface PartedWireEntry extends WireEntry {
  readonly payloadParts: readonly Buffer[];
  readonly payloadLength: number;
}

function isParted(e: WireEntry): e is PartedWireEntry {
  return (e as Partial<PartedWireEntry>).payloadParts !== undefined;
}

/** Payload bytes of an entry, without joining its parts. */
export function payloadLengthOf(e: WireEntry): number {
  return isParted(e) ? e.payloadLength : e.payload.length;
}

const encoded = new WeakMap<WireEntry, EncodedEntry>();

/** The entry encoded for the wire, once per entry object. */
export function encodeWireEntry(e: WireEntry): EncodedEntry {
  let enc = encoded.get(e);
  if (!enc) {
    enc = new EncodedEntry(e, isParted(e) ? e.payloadParts : e.payload);
    encoded.set(e, enc);
  }
  return enc;
}

export interface AddBatch {
  entries: EncodedEntry[];
  recovery: boolean;
}

function sameEntries(a: readonly EncodedEntry[], b: readonly EncodedEntry[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Serializer of AddEntries requests that reuses the previous request's bytes for an identical batch. */
export class AddRequestEncoder {
  private last: { entries: readonly EncodedEntry[]; recovery: boolean; bytes: Buffer } | undefined;
  private clearScheduled = false;
  /** Requests built and requests reused (for tests and profiling). */
  readonly stats = { built: 0, reused: 0 };

  readonly serialize = (batch: AddBatch): Buffer => {
    const last = this.last;
    if (last && last.recovery === batch.recovery && sameEntries(last.entries, batch.entries)) {
      this.stats.reused++;
      return last.bytes;
    }
    const bytes = encodeAddEntriesRequest(batch.entries, batch.recovery);
    this.stats.built++;
    this.last = { entries: batch.entries, recovery: batch.recovery, bytes };
    // The bookies of one write set flush in the same turn of the event loop;
    // after it the memo would only hold payloads alive.
    if (!this.clearScheduled) {
      this.clearScheduled = true;
      setImmediate(() => {
        this.clearScheduled = false;
        this.last = undefined;
      });
    }
    return bytes;
  };
}

/** One per process: every bookie client's stream serializes through it. */
export const sharedAddRequestEncoder = new AddRequestEncoder();
