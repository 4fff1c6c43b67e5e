import { InvalidArgumentError } from '@sluice/common';
import test from 'ava';
import { bundleIndexOf, bundleOf, bundleRanges } from './bundles.js';
import { Consumer, type ConsumerSink } from './consumer.js';
import { decodeEnvelope, encodeEnvelope } from './entry-envelope.js';
import { KeySharedSelector } from './key-shared-selector.js';
import { defaultPolicies, mergePolicies, validatePolicies } from './policies.js';
import { SharedSelector } from './shared-selector.js';
import { SingleActiveSelector } from './single-active-selector.js';
import { parseNamespaceName, parseTopicName } from './topic-name.js';

const sink = (log: string[] = []): ConsumerSink => ({
  deliver: () => undefined,
  activeChange: (a) => log.push(String(a)),
  error: () => undefined,
  close: () => undefined,
});

test('topic names - short and full forms, partitions', (t) => {
  const s = parseTopicName('orders');
  t.is(s.full, 'persistent://public/default/orders');
  t.is(s.path, 'public/default/orders');
  t.is(s.partition, -1);
  const p = parseTopicName('persistent://acme/prod/orders-partition-3');
  t.is(p.partition, 3);
  t.is(p.base, 'persistent://acme/prod/orders');
  t.is(p.namespaceName, 'acme/prod');
});

test('topic names - bad names say what is wrong', (t) => {
  t.throws(() => parseTopicName('a//b'), {
    instanceOf: InvalidArgumentError,
    message: /namespace in 'a\/\/b' is empty/,
  });
  t.throws(() => parseTopicName('x/y'), { message: /2 segments/ });
  t.throws(() => parseTopicName('http://a/b/c'), { message: /only persistent:\/\// });
  t.throws(() => parseTopicName(''), { message: /empty/ });
  t.throws(() => parseTopicName('a/b/c d'), { message: /topic 'c d'/ });
  t.throws(() => parseNamespaceName('public'), { message: /tenant\/namespace/ });
});

test('entry envelope - round trip keeps every header field and the payload bytes', (t) => {
  const payload = Buffer.from([1, 2, 3, 250]);
  const h = {
    publishTime: 1_700_000_000_123,
    producerName: 'prod-é',
    firstSequenceId: 2 ** 40,
    count: 7,
    codec: 2,
    uncompressedSize: 999,
    deliverAt: 0,
    key: 'key-ü',
  };
  const env = decodeEnvelope(encodeEnvelope(h, payload));
  t.like(env, h);
  t.deepEqual(env.payload, payload);
  t.throws(() => decodeEnvelope(Buffer.from('not an envelope at all, surely not')), {
    message: /not a Sluice batch envelope/,
  });
});

test('bundles - equal hash ranges covering 2^32, stable placement', (t) => {
  const r = bundleRanges(4);
  t.is(r.length, 4);
  t.is(r[0]!.name, '0x00000000_0x40000000');
  t.is(r[3]!.end, 2 ** 32);
  t.is(bundleIndexOf(0, 4), 0);
  t.is(bundleIndexOf(2 ** 32 - 1, 4), 3);
  t.deepEqual(bundleOf('persistent://public/default/x', 4), bundleOf('persistent://public/default/x', 4));
});

test('policies - validation and layering', (t) => {
  t.throws(
    () =>
      validatePolicies(
        { persistence: { ensembleSize: 1, writeQuorum: 2, ackQuorum: 1 } },
        { allowBundles: false },
      ),
    {
      message: /ensemble >= write quorum >= ack quorum/,
    },
  );
  t.throws(() => validatePolicies({ bundles: 8 }, { allowBundles: false }), { message: /bundles/ });
  t.throws(() => validatePolicies({ maxMessageSize: 100 * 1024 * 1024 }, { allowBundles: false }), {
    message: /maxMessageSize/,
  });
  // A batch and its envelope must fit one ledger entry.
  t.throws(() => validatePolicies({ maxMessageSize: 10 * 1024 * 1024 }, { allowBundles: false }), {
    message: /maxMessageSize/,
  });
  t.notThrows(() => validatePolicies({ maxMessageSize: 5 * 1024 * 1024 }, { allowBundles: false }));
  const eff = mergePolicies(defaultPolicies({ ensembleSize: 2, writeQuorum: 2, ackQuorum: 2 }), {
    deduplicationEnabled: false,
  });
  t.false(eff.deduplicationEnabled);
  t.is(eff.maxMessageSize, 5 * 1024 * 1024);
  t.is(eff.bundles, 4);
});

test('selectors - failover picks by priority then name and announces changes', (t) => {
  const log: string[] = [];
  const sel = new SingleActiveSelector('failover');
  const b = new Consumer('b', 0, 1000, sink(log));
  const a = new Consumer('a', 1, 1000, sink(log));
  sel.consumersChanged([a, b]);
  t.is(sel.activeConsumer(), b);
  const z = new Consumer('z', -1, 1000, sink(log));
  sel.consumersChanged([a, b, z]);
  t.is(sel.activeConsumer(), z);
  t.false(b.active);
  b.permits = 5;
  const held = new Set<Consumer | 'all'>();
  t.is(
    sel.pick({ position: { ledgerId: 1, entryId: 0 }, key: '', count: 1 }, held),
    undefined,
    'no permits on the active one',
  );
  t.true(held.has('all'));
});

test('selectors - shared round robin honours permits and max unacked', (t) => {
  const sel = new SharedSelector();
  const cs = ['a', 'b', 'c'].map((n) => new Consumer(n, 0, 2, sink()));
  for (const c of cs) c.permits = 10;
  cs[1]!.unackedMessages = 2;
  sel.consumersChanged(cs);
  const picks = Array.from({ length: 4 }, () => sel.pick()?.name);
  t.deepEqual(picks, ['a', 'c', 'a', 'c']);
});

test('selectors - key_shared sends a key to one consumer and holds it behind a join barrier', (t) => {
  const sel = new KeySharedSelector();
  const cs = ['a', 'b', 'c'].map((n) => new Consumer(n, 0, 1000, sink()));
  for (const c of cs) c.permits = 1000;
  sel.consumersChanged(cs);
  const owners = new Map<string, string>();
  for (let i = 0; i < 200; i++) {
    const key = `k${i % 40}`;
    const c = sel.pick({ position: { ledgerId: 1, entryId: i }, key, count: 1 }, new Set(), undefined)!;
    t.is(owners.get(key) ?? c.name, c.name);
    owners.set(key, c.name);
  }
  t.is(new Set(owners.values()).size, 3, 'keys spread over every consumer');
  const late = new Consumer('d', 0, 1000, sink());
  late.permits = 1000;
  late.joinBarrier = { ledgerId: 1, entryId: 100 };
  sel.consumersChanged([...cs, late]);
  const lateKey = [...Array(200).keys()].map((i) => `x${i}`).find((k) => sel.consumerFor(k) === late)!;
  const held = new Set<Consumer | 'all'>();
  t.is(
    sel.pick({ position: { ledgerId: 1, entryId: 150 }, key: lateKey, count: 1 }, held, {
      ledgerId: 1,
      entryId: 50,
    }),
    undefined,
  );
  t.true(held.has(late));
  t.is(
    sel.pick({ position: { ledgerId: 1, entryId: 151 }, key: lateKey, count: 1 }, new Set(), {
      ledgerId: 1,
      entryId: 100,
    }),
    late,
  );
  t.falsy(late.joinBarrier, 'the barrier lifts once everything before it is acknowledged');
});
