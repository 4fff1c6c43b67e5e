import { type ServiceError, status } from '@grpc/grpc-js';
import { sleep, useStandaloneWire, type Wire } from './features-broker-wire.js';

const test = useStandaloneWire('sluice-producers-');

async function timeToPublish(wire: Wire, topic: string, batches: number): Promise<number> {
  const p = await wire.produce(topic);
  const start = Date.now();
  for (let i = 0; i < batches; i++) p.send([`m${i}`, `n${i}`]);
  for (let i = 0; i < batches; i++) {
    const r = await p.response(30_000);
    if (!r.receipt) throw new Error(`refused: ${JSON.stringify(r.error)}`);
  }
  p.close();
  return Date.now() - start;
}

test('rate limit - a topic limited to 20 messages/s is slowed (back-pressure, no errors); others are not', async (t) => {
  const { wire } = t.context;
  await wire.call('CreateTopic', { topic: 'limited' });
  await wire.call('SetTopicPolicies', {
    topic: 'limited',
    policies: { publishRate: { messagesPerSecond: 20 } },
  });
  await sleep(200);
  // 30 batches of 2 messages = 60 messages: at least ~2.9 s at 20 messages/s.
  const limited = await timeToPublish(wire, 'limited', 30);
  const free = await timeToPublish(wire, 'unlimited', 30);
  t.true(limited >= 2000, `limited producer took ${limited} ms`);
  t.true(free < limited / 2, `unlimited producer took ${free} ms vs ${limited} ms`);
  // Lifting the limit applies to the loaded topic.
  await wire.call('SetTopicPolicies', {
    topic: 'limited',
    policies: { publishRate: { messagesPerSecond: 0 } },
  });
  await sleep(300);
  const lifted = await timeToPublish(wire, 'limited', 30);
  t.true(lifted < 1500, `after lifting the limit: ${lifted} ms`);
});

test('rate limit - a negative rate is refused with INVALID_ARGUMENT on namespaces and topics', async (t) => {
  const { wire } = t.context;
  const ns = await t.throwsAsync<ServiceError>(
    wire.call('SetNamespacePolicies', {
      namespace: 'public/default',
      policies: { publishRate: { messagesPerSecond: -5 } },
    }),
  );
  t.is(ns?.code, status.INVALID_ARGUMENT);
  t.regex(ns?.details ?? '', /publishRate.messagesPerSecond=-5 is invalid/);
  await wire.call('CreateTopic', { topic: 'neg-rate', ifNotExists: true });
  const tp = await t.throwsAsync<ServiceError>(
    wire.call('SetTopicPolicies', { topic: 'neg-rate', policies: { publishRate: { bytesPerSecond: -1 } } }),
  );
  t.is(tp?.code, status.INVALID_ARGUMENT);
});

test('access modes - exclusive refuses a second producer; shared ones are refused while it holds the topic', async (t) => {
  const { wire } = t.context;
  const topic = 'access-exclusive';
  const ex = await wire.produce(topic, { accessMode: 'PRODUCER_ACCESS_MODE_EXCLUSIVE' });
  const second = wire.produceStream(topic, 'PRODUCER_ACCESS_MODE_EXCLUSIVE');
  const st = await second.status();
  t.is(st?.code, status.FAILED_PRECONDITION);
  t.regex(st?.details ?? '', /exclusive/);
  const shared = wire.produceStream(topic, 'PRODUCER_ACCESS_MODE_UNSPECIFIED');
  t.is((await shared.status())?.code, status.FAILED_PRECONDITION);
  await ex.publish(['still works']);
  ex.close();
  await sleep(300);
  const after = await wire.produce(topic);
  const blocked = wire.produceStream(topic, 'PRODUCER_ACCESS_MODE_EXCLUSIVE');
  t.is((await blocked.status())?.code, status.FAILED_PRECONDITION, 'exclusive needs the topic to itself');
  after.close();
});

test('access modes - wait-for-exclusive waits until the other producer leaves, then holds the topic', async (t) => {
  const { wire } = t.context;
  const topic = 'access-wait';
  const first = await wire.produce(topic, { accessMode: 'PRODUCER_ACCESS_MODE_EXCLUSIVE' });
  const waiting = wire.produceStream(topic, 'PRODUCER_ACCESS_MODE_WAIT_FOR_EXCLUSIVE');
  t.is(await waiting.next(800), undefined, 'not opened while another producer holds the topic');
  first.close();
  const opened = await waiting.next(5000);
  t.truthy(opened?.opened, 'opened once the exclusive producer left');
  const shared = wire.produceStream(topic, 'PRODUCER_ACCESS_MODE_UNSPECIFIED');
  t.is((await shared.status())?.code, status.FAILED_PRECONDITION);
  waiting.close();
});

test('max message size - per namespace: announced on open, larger batches refused, stream continues', async (t) => {
  const { wire } = t.context;
  await wire.call('CreateNamespace', { namespace: 'public/small', policies: { maxMessageSize: 2048 } });
  const p = await wire.produce('persistent://public/small/t');
  t.is(p.maxMessageSize, 2048);
  p.send(['y'.repeat(4000)]);
  const r = await p.response();
  t.is(r.error?.errorCode, 'INVALID_ARGUMENT');
  t.regex(String(r.error?.message), /exceeds the max message size of 2048 bytes/);
  t.truthy(await p.publish(['small']));
  // Raising it applies to the loaded topic.
  await wire.call('SetNamespacePolicies', { namespace: 'public/small', policies: { maxMessageSize: 8192 } });
  await sleep(300);
  t.truthy(await p.publish(['y'.repeat(4000)]));
  p.close();
});

test('bad input - an unknown codec in a batch header is refused with INVALID_ARGUMENT and nothing is stored', async (t) => {
  const { wire } = t.context;
  const topic = 'bad-codec';
  const p = await wire.produce(topic);
  p.send(['z'], { codec: 42 });
  const r = await p.response();
  t.is(r.error?.errorCode, 'INVALID_ARGUMENT');
  t.regex(String(r.error?.message), /codec '42' is unknown/);
  await p.publish(['ok']);
  const c = await wire.subscribe(topic, 's', { initialPosition: 'earliest' });
  c.flow(10);
  const got = await c.receive(2, 1000);
  t.deepEqual(
    got.flatMap((d) => d.values),
    ['ok'],
  );
  p.close();
  c.close();
});
