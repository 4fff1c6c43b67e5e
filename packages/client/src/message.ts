import type { MessageId } from '@sluice/common';

/** A message as the application receives it. */
export interface Message {
  /** "ledgerId:entryId:batchIndex", with ":partition" on partitioned topics. */
  id: string;
  /** Routing key; '' when the producer set none. */
  key: string;
  value: Buffer;
  properties: Record<string, string>;
  /** Time the broker stored the message (epoch ms). */
  publishTime: number;
  /** Application event time (epoch ms); 0 when unset. */
  eventTime: number;
  /** Times this message was delivered before on this subscription. */
  redeliveryCount: number;
  producerName: string;
  /** Topic (the partition's topic on a partitioned topic). */
  topic: string;
}

/** Where a received message came from; kept off the enumerable fields apps print. */
export const ORIGIN = Symbol('sluice.origin');

export interface MessageOrigin {
  messageId: MessageId;
  /** Stream generation of the partition consumer that received it (stale ones are dropped). */
  generation: number;
  partitionIndex: number;
  /** Index of the partition consumer in its consumer (a consumer may span topics). */
  slot: number;
}

export type ReceivedMessage = Message & { [ORIGIN]: MessageOrigin };

export function originOf(msg: Message): MessageOrigin | undefined {
  return (msg as Partial<ReceivedMessage>)[ORIGIN];
}

/** Wire form of a message id (proto `MessageId`). */
export function toWireId(id: MessageId): {
  ledgerId: number;
  entryId: number;
  batchIndex: number;
  partition: number;
} {
  return { ledgerId: id.ledgerId, entryId: id.entryId, batchIndex: id.batchIndex, partition: id.partition };
}

export function compareMessageIds(a: MessageId, b: MessageId): number {
  return a.ledgerId - b.ledgerId || a.entryId - b.entryId || a.batchIndex - b.batchIndex;
}
