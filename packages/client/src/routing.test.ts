import { InvalidArgumentError, murmur3 } from '@sluice/common';
import test from 'ava';
import { PartitionRouter } from './routing.js';
import { parseServiceUrl } from './service-url.js';
import { fullTopicName, partitionTopicName } from './topic-name.js';

test('routing - keyed messages go to murmur3(key) % partitions', (t) => {
  const router = new PartitionRouter(7);
  for (const key of ['a', 'order-1', 'ключ', '🔑']) t.is(router.choose(key), murmur3(key) % 7);
  t.is(router.choose('order-1'), router.choose('order-1'));
});

test('routing - messages without a key go round robin', (t) => {
  const router = new PartitionRouter(3);
  t.deepEqual(
    Array.from({ length: 7 }, () => router.choose(undefined)),
    [0, 1, 2, 0, 1, 2, 0],
  );
  t.is(new PartitionRouter(1).choose('x'), 0);
});

test('service url - host:port and sluice://host:port, default port 6650', (t) => {
  t.is(parseServiceUrl('localhost:6650'), 'localhost:6650');
  t.is(parseServiceUrl('sluice://broker-1:7000'), 'broker-1:7000');
  t.is(parseServiceUrl('sluice://broker-1/'), 'broker-1:6650');
  t.is(parseServiceUrl('[::1]:6650'), '[::1]:6650');
  t.throws(() => parseServiceUrl('http://x:1'), { instanceOf: InvalidArgumentError });
  t.throws(() => parseServiceUrl('a/b'), { instanceOf: InvalidArgumentError });
});

test('topic names - short forms expand, partitions are T-partition-i', (t) => {
  t.is(fullTopicName('orders'), 'persistent://public/default/orders');
  t.is(fullTopicName('acme/app/orders'), 'persistent://acme/app/orders');
  t.is(fullTopicName('persistent://a/b/c'), 'persistent://a/b/c');
  t.is(partitionTopicName('orders', 2), 'persistent://public/default/orders-partition-2');
});
