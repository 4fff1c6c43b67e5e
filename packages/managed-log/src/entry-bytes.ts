import type { Position } from '@sluice/common';
import type { EntryBytes, LogEntry } from './api.js';

/** Bytes of an entry, whether one Buffer or parts. */
export function entryByteLength(bytes: EntryBytes): number {
  if (Buffer.isBuffer(bytes)) return bytes.length;
  let n = 0;
  for (const part of bytes) n += part.length;
  return n;
}

/**
 * A LogEntry for `bytes`. An entry kept in parts joins them only when its
 * `payload` is first asked for; a reader that understands parts (a broker
 * dispatching from the tail cache) reads `parts` and never joins them.
 */
export function logEntry(position: Position, bytes: EntryBytes): LogEntry {
  if (Buffer.isBuffer(bytes)) return { position, payload: bytes };
  return new PartedLogEntry(position, bytes);
}

class PartedLogEntry implements LogEntry {
  private joined: Buffer | undefined;

  constructor(
    readonly position: Position,
    readonly parts: readonly Buffer[],
  ) {}

  get payload(): Buffer {
    this.joined ??= Buffer.concat(this.parts as Buffer[]);
    return this.joined;
  }
}
