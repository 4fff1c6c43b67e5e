import { EventEmitter } from 'node:events';
import { silentLogger } from '@sluice/common';
import type { ConsumeResponse, MessageId } from '@sluice/proto';
import test from 'ava';
import { createConsumerService } from './consumer-service.js';
import { batchEntry, MemoryLog, openMemoryTopic } from './test-support/memory-log.js';
import type { TopicManager } from './topic-manager.js';

/** A Consume stream as the service sees it: what it wrote. */
class FakeCall extends EventEmitter {
  readonly written: ConsumeResponse[] = [];
  writableEnded = false;
  destroyed = false;

  write(m: ConsumeResponse): boolean {
    this.written.push(m);
    return true;
  }

  end(): void {
    this.writableEnded = true;
  }
}

const TOPIC = 't/ns/readers';

async function rig(stored: number) {
  const log = new MemoryLog();
  for (let i = 0; i < stored; i++) await log.append(batchEntry(1));
  const topic = await openMemoryTopic(TOPIC, log);
  const topics = { acquire: async () => topic, served: () => topic } as unknown as TopicManager;
  const service = createConsumerService(topics, silentLogger);
  /** Subscribe on a new stream; resolves with the stream once the broker answered. */
  const subscribe = async (fields: Record<string, unknown>): Promise<FakeCall> => {
    const call = new FakeCall();
    service.Consume(call as never);
    call.emit('data', {
      request: 'subscribe',
      subscribe: {
        topic: TOPIC,
        subscription: 's',
        type: 'SUBSCRIPTION_TYPE_EXCLUSIVE',
        consumerName: '',
        priority: 0,
        initialPosition: 'INITIAL_POSITION_LATEST',
        nonDurable: false,
        startMessageId: null,
        maxUnackedMessages: 0,
        ...fields,
      },
    });
    for (let i = 0; i < 100 && call.written.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    return call;
  };
  return { log, subscribe };
}

function startOf(call: FakeCall): MessageId | null | undefined {
  const first = call.written[0];
  if (!first?.subscribed) throw new Error(`expected 'subscribed' first, got ${JSON.stringify(first)}`);
  return first.subscribed.startMessageId;
}

const at = (ledgerId: number, entryId: number): MessageId => ({
  ledgerId,
  entryId,
  batchIndex: 0,
  partition: -1,
});

test('consume - Subscribed tells a reader at latest the next position to be written, and delivery starts there', async (t) => {
  const { log, subscribe } = await rig(3);
  const call = await subscribe({ nonDurable: true });
  t.deepEqual(startOf(call), at(1, 3));
  await log.append(batchEntry(1));
  call.emit('data', { request: 'flow', flow: { permits: 10 } });
  for (let i = 0; i < 100 && call.written.length < 2; i++) await new Promise((r) => setTimeout(r, 5));
  const delivered = call.written[1]?.deliveries?.deliveries?.[0]?.messageId;
  t.like(delivered, { ledgerId: 1, entryId: 3 });
});

test('consume - Subscribed tells a reader where earliest and a given id resolved to, at entry granularity', async (t) => {
  const { subscribe } = await rig(3);
  t.deepEqual(
    startOf(await subscribe({ nonDurable: true, initialPosition: 'INITIAL_POSITION_EARLIEST' })),
    at(1, 0),
  );
  const fromId = await subscribe({
    nonDurable: true,
    startMessageId: { ledgerId: 1, entryId: 1, batchIndex: 2, partition: -1 },
  });
  t.deepEqual(startOf(fromId), at(1, 1));
  // The end of the log, as a reader that was told 'latest' asks for it again after a reconnect.
  const fromEnd = await subscribe({
    nonDurable: true,
    startMessageId: { ledgerId: 1, entryId: 3, batchIndex: 0, partition: -1 },
  });
  t.deepEqual(startOf(fromEnd), at(1, 3));
});

test('consume - Subscribed carries no start position for a durable subscription', async (t) => {
  const { subscribe } = await rig(3);
  const call = await subscribe({ subscription: 'durable' });
  t.falsy(startOf(call));
});
