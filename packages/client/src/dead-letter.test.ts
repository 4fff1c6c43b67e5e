import test from 'ava';
import { SluiceClient } from './index.js';
import { FakeBroker, FakeCluster } from './test-support/fake-broker.js';

test('dead letter - close does not wait forever for a letter the dead-letter topic never acknowledges', async (t) => {
  const broker = await FakeBroker.start(new FakeCluster());
  const client = new SluiceClient({ serviceUrl: broker.address, operationTimeoutMs: 1000 });
  t.teardown(async () => {
    await client.close();
    await broker.stop();
  });
  const producer = await client.createProducer({ topic: 'd' });
  await producer.send('poison');
  const consumer = await client.subscribe({
    topic: 'd',
    subscription: 's',
    type: 'shared',
    initialPosition: 'earliest',
    deadLetterPolicy: { maxRedeliverCount: 1 },
    nackRedeliveryBackoff: { minDelayMs: 10, maxDelayMs: 10 },
  });
  const m = (await consumer.receive(2000))!;
  t.is(m.value.toString(), 'poison');
  // The dead-letter topic's broker stops answering; the redelivered message is diverted to it.
  broker.holdReceipts = true;
  consumer.nack(m);
  await new Promise((r) => setTimeout(r, 300));
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    consumer.close().then(() => 'closed'),
    new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve('still closing'), 5000);
    }),
  ]);
  clearTimeout(timer);
  t.is(outcome, 'closed');
  t.true(Date.now() - started < 2500);
});
