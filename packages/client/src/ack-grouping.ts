import type { MessageId } from '@sluice/common';
import { toWireId } from './message.js';

/** A delivered message's id, knowing how many messages its entry (batch) holds. */
export interface DeliveredMessageId extends MessageId {
  entrySize: number;
}

type WireId = ReturnType<typeof toWireId>;

/** One flush of individual acks: whole entries, and the messages of entries acknowledged in part. */
export interface GroupedAcks {
  entryIds: WireId[];
  messageIds: WireId[];
}

/**
 * Replace each run of acks that covers every message of one entry with a
 * single entry id (`Ack.entry_ids`), so the broker decodes and applies one id
 * per batch instead of one per message. Runs are consecutive acks of the same
 * entry, which is what a consumer acking in receive order produces; acks in
 * any other order, of ids parsed from strings, or of entries delivered with
 * indexes already acknowledged stay individual (still correct, just larger).
 */
export function groupAcks(ids: readonly MessageId[]): GroupedAcks {
  const entryIds: WireId[] = [];
  const messageIds: WireId[] = [];
  let i = 0;
  while (i < ids.length) {
    const first = ids[i]!;
    let n = 1;
    while (
      i + n < ids.length &&
      ids[i + n]!.entryId === first.entryId &&
      ids[i + n]!.ledgerId === first.ledgerId
    ) {
      n++;
    }
    const size = (first as Partial<DeliveredMessageId>).entrySize;
    if (size === n && coversEntry(ids, i, n)) {
      entryIds.push({
        ledgerId: first.ledgerId,
        entryId: first.entryId,
        batchIndex: 0,
        partition: first.partition,
      });
    } else {
      for (let j = i; j < i + n; j++) messageIds.push(toWireId(ids[j]!));
    }
    i += n;
  }
  return { entryIds, messageIds };
}

/** Whether ids[from, from + n) are batch indexes 0..n-1, each once. */
function coversEntry(ids: readonly MessageId[], from: number, n: number): boolean {
  let inOrder = true;
  for (let j = 0; j < n && inOrder; j++) inOrder = ids[from + j]!.batchIndex === j;
  if (inOrder) return true;
  const seen = new Uint8Array(n);
  for (let j = 0; j < n; j++) {
    const index = ids[from + j]!.batchIndex;
    if (index < 0 || index >= n || seen[index] === 1) return false;
    seen[index] = 1;
  }
  return true;
}
