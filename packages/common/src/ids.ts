import { InvalidArgumentError } from './errors.js';

/** Ledger ids are allocated from ranges in metadata; safe integers. */
export type LedgerId = number;
/** Entry ids start at 0 within a ledger; -1 means "none yet". */
export type EntryId = number;
/** A bookie's stable identity, kept in its data dir (not its address). */
export type BookieId = string;

/** A position in a managed log. */
export interface Position {
  ledgerId: LedgerId;
  entryId: EntryId;
}

export function comparePositions(a: Position, b: Position): number {
  return a.ledgerId - b.ledgerId || a.entryId - b.entryId;
}

export function formatPosition(p: Position): string {
  return `${p.ledgerId}:${p.entryId}`;
}

/** A message inside a log: an entry plus the message's index in the entry's batch. */
export interface MessageId extends Position {
  batchIndex: number;
  /** Partition index on partitioned topics; -1 otherwise. */
  partition: number;
}

/** `ledgerId:entryId:batchIndex`, with `:partition` appended on partitioned topics. */
export function formatMessageId(id: MessageId): string {
  const base = `${id.ledgerId}:${id.entryId}:${id.batchIndex}`;
  return id.partition >= 0 ? `${base}:${id.partition}` : base;
}

export function parseMessageId(text: string): MessageId {
  const parts = text.trim().split(':');
  const nums = parts.map((p) => (/^-?\d+$/.test(p) ? Number(p) : Number.NaN));
  if ((parts.length !== 3 && parts.length !== 4) || nums.some((n) => !Number.isSafeInteger(n))) {
    throw new InvalidArgumentError(
      `message id '${text}' is malformed; use ledgerId:entryId:batchIndex[:partition], e.g. 12:0:0`,
    );
  }
  return { ledgerId: nums[0]!, entryId: nums[1]!, batchIndex: nums[2]!, partition: nums[3] ?? -1 };
}

export function assertEntryId(value: number, what = 'entry id'): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(`${what} ${value} is invalid; it must be a non-negative integer`);
  }
}
