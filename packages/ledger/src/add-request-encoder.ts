/**
 * Entries as a GrpcBookieClient sends them: an entry object handed to
 * several bookies (the writer sends one object to its whole write set) is
 * encoded once, its head memoized per object and its payload Buffers
 * referenced, not copied, into every bookie's request.
 */
import { EncodedEntry } from '@sluice/proto';
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
