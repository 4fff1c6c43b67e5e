import {
  InvalidArgumentError,
  type Position,
  ResourceExhaustedError,
  silentLogger,
  UnavailableError,
} from '@sluice/common';
import type { MetadataStore } from '@sluice/metadata';
import type { BatchHeader__Output } from '@sluice/proto';
import test from 'ava';
import { DEDUP_CURSOR, Deduplication } from './deduplication.js';
import { encodeEnvelope } from './entry-envelope.js';
import { dedupKey } from './metadata-keys.js';
import { embeddedStore } from './test-support/broker-rig.js';
import { MemoryLog, openMemoryTopic } from './test-support/memory-log.js';
import type { Topic } from './topic.js';

const header = (seq: number, count = 1, key = ''): BatchHeader__Output =>
  ({
    firstSequenceId: seq,
    count,
    codec: 'COMPRESSION_CODEC_UNSPECIFIED',
    uncompressedSize: 1,
    deliverAt: 0,
    key,
  }) as unknown as BatchHeader__Output;

async function openTopic(): Promise<{ topic: Topic; log: MemoryLog }> {
  const log = new MemoryLog();
  const topic = await openMemoryTopic('t/ns/dedup', log);
  return { topic, log };
}

const payload = Buffer.from('x');
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('dedup - a resend racing a write that then fails is written, not confirmed without a position', async (t) => {
  const { topic, log } = await openTopic();
  log.holdAppends = true;
  const first = topic.publish('p', header(7), payload);
  const resend = topic.publish('p', header(7), payload);
  await tick();
  t.is(log.held.length, 1);
  log.held[0]!.reject(new UnavailableError('bookies down'));
  await t.throwsAsync(first, { instanceOf: UnavailableError });
  await tick();
  t.is(log.held.length, 2, 'the resend is written once the original failed');
  log.held[1]!.resolve();
  const r = await resend;
  t.deepEqual(r.position, { ledgerId: 1, entryId: 0 });
  t.is(log.entries.length, 1);
});

test('dedup - a resend of a failed write is refused while a later send is still in flight', async (t) => {
  const { topic, log } = await openTopic();
  log.holdAppends = true;
  const seven = topic.publish('p', header(7), payload);
  const eight = topic.publish('p', header(8), payload);
  const resend = topic.publish('p', header(7), payload);
  await tick();
  log.held[0]!.reject(new ResourceExhaustedError('too many appends pending'));
  await t.throwsAsync(seven);
  await t.throwsAsync(resend, { instanceOf: UnavailableError });
  log.held[1]!.resolve();
  t.deepEqual((await eight).position, { ledgerId: 1, entryId: 0 });
});

test('dedup - a batch key too long for the envelope is refused and not recorded as seen', async (t) => {
  const { topic } = await openTopic();
  await t.throwsAsync(topic.publish('p', header(3, 1, 'k'.repeat(70_000)), payload), {
    instanceOf: InvalidArgumentError,
  });
  const r = await topic.publish('p', header(3), payload);
  t.false(r.duplicate);
  t.truthy(r.position);
});

test('dedup - a failed send does not roll the state back below sends stored around it', async (t) => {
  const { topic, log } = await openTopic();
  log.holdAppends = true;
  const sends = [10, 11, 12].map((s) => topic.publish('p', header(s), payload));
  await tick();
  log.held[1]!.reject(new ResourceExhaustedError('too many appends pending'));
  await t.throwsAsync(sends[1]!);
  log.held[0]!.resolve();
  log.held[2]!.resolve();
  const ten = (await sends[0]!).position as Position;
  await sends[2]!;
  log.holdAppends = false;
  const again = await topic.publish('p', header(10), payload);
  t.true(again.duplicate);
  t.deepEqual(again.position, ten);
  t.is(log.entries.length, 2, 'seq 10 is stored once');
});

test('dedup - an idle, disconnected producer is forgotten; a connected one is kept', async (t) => {
  const { topic } = await openTopic();
  await topic.publish('gone', header(1), payload);
  await topic.publish('here', header(1), payload);
  topic.producers.set('here', { name: 'here', connected: true, kick: () => undefined });
  await topic.maintain(Date.now() + 7 * 60 * 60 * 1000);
  t.is(topic.lastSequenceId('gone'), -1);
  t.is(topic.lastSequenceId('here'), 1);
});

const PATH = 't/ns/dedup';

/** Store one send of `producer` through `d`, as a topic does. */
async function send(d: Deduplication, log: MemoryLog, producer: string, seq: number): Promise<Position> {
  const verdict = d.check(producer, seq, 1);
  if (verdict.duplicate) throw new Error(`seq ${seq} of '${producer}' was taken for a duplicate`);
  const entry = encodeEnvelope(
    {
      publishTime: Date.now(),
      producerName: producer,
      firstSequenceId: seq,
      count: 1,
      codec: 0,
      uncompressedSize: 1,
      deliverAt: 0,
      key: '',
    },
    payload,
  );
  return d.track(producer, seq, 1, log.append(entry));
}

/** A log that a new owner recovers: the entries the old owner stored, as the fenced ledger keeps them. */
async function takeOver(from: MemoryLog): Promise<MemoryLog> {
  const log = new MemoryLog();
  for (const e of from.entries) await log.append(e.payload);
  return log;
}

async function storedPosition(store: MetadataStore): Promise<Position | undefined> {
  const raw = await store.get(dedupKey(PATH));
  return raw && (JSON.parse(raw.value.toString('utf8')) as { position: Position }).position;
}

const dedupCursor = async (log: MemoryLog) => (await log.openCursor(DEDUP_CURSOR)).markDelete;

test('dedup snapshot - repeated snapshots of one owner advance the stored position and the cursor', async (t) => {
  const store = await embeddedStore(t);
  const log = new MemoryLog();
  const d = await Deduplication.recover(store, log.asLog(), PATH, silentLogger);
  for (let seq = 0; seq < 3; seq++) await send(d, log, 'p', seq);
  await d.snapshot();
  t.deepEqual(await storedPosition(store), { ledgerId: 1, entryId: 2 });
  t.deepEqual(await dedupCursor(log), { ledgerId: 1, entryId: 2 });
  for (let seq = 3; seq < 6; seq++) await send(d, log, 'p', seq);
  await d.snapshot();
  await send(d, log, 'p', 6);
  await d.close();
  t.deepEqual(await storedPosition(store), { ledgerId: 1, entryId: 6 });
  t.deepEqual(await dedupCursor(log), { ledgerId: 1, entryId: 6 });
  const again = await Deduplication.recover(store, log.asLog(), PATH, silentLogger);
  t.is(again.lastSequenceId('p'), 6);
});

for (const staleWroteFirst of [false, true]) {
  test(`dedup snapshot - a broker that lost the topic does not replace the new owner's newer snapshot (${staleWroteFirst ? 'after snapshotting itself' : 'none stored at its load'})`, async (t) => {
    const store = await embeddedStore(t);
    const oldLog = new MemoryLog();
    const stale = await Deduplication.recover(store, oldLog.asLog(), PATH, silentLogger);
    for (let seq = 0; seq < 3; seq++) await send(stale, oldLog, 'p', seq);
    if (staleWroteFirst) await stale.snapshot();
    const staleAck = await dedupCursor(oldLog);

    // Another broker takes the topic over, stores more, snapshots and trims what its snapshot covers.
    const newLog = await takeOver(oldLog);
    const owner = await Deduplication.recover(store, newLog.asLog(), PATH, silentLogger);
    t.is(owner.lastSequenceId('p'), 2);
    for (let seq = 3; seq < 6; seq++) await send(owner, newLog, 'p', seq);
    await owner.snapshot();
    newLog.trimTo(newLog.entries.length);
    t.deepEqual(await storedPosition(store), { ledgerId: 1, entryId: 5 });

    // The old owner still runs its periodic snapshot and its close.
    await stale.snapshot();
    await stale.close();
    t.deepEqual(await storedPosition(store), { ledgerId: 1, entryId: 5 }, 'the newer snapshot stays');
    t.deepEqual(await dedupCursor(oldLog), staleAck, 'the stale instance acks nothing it did not persist');

    const recovered = await Deduplication.recover(store, newLog.asLog(), PATH, silentLogger);
    t.is(recovered.lastSequenceId('p'), 5);
    t.true(
      recovered.check('p', 4, 1).duplicate,
      'a resend of a send after the old snapshot is still a duplicate',
    );
  });
}

test('dedup snapshot - the owner replaces an older snapshot that a stale broker wrote after the owner loaded', async (t) => {
  const store = await embeddedStore(t);
  const oldLog = new MemoryLog();
  const stale = await Deduplication.recover(store, oldLog.asLog(), PATH, silentLogger);
  for (let seq = 0; seq < 3; seq++) await send(stale, oldLog, 'p', seq);
  const newLog = await takeOver(oldLog);
  const owner = await Deduplication.recover(store, newLog.asLog(), PATH, silentLogger);
  for (let seq = 3; seq < 6; seq++) await send(owner, newLog, 'p', seq);
  // The stale broker's write lands first, at an older position: it wins the create, the owner's CAS loses.
  await stale.close();
  t.deepEqual(await storedPosition(store), { ledgerId: 1, entryId: 2 });
  await owner.snapshot();
  t.deepEqual(await storedPosition(store), { ledgerId: 1, entryId: 5 });
  t.deepEqual(await dedupCursor(newLog), { ledgerId: 1, entryId: 5 });
  // The owner goes on snapshotting with the version it wrote.
  await send(owner, newLog, 'p', 6);
  await owner.snapshot();
  t.deepEqual(await storedPosition(store), { ledgerId: 1, entryId: 6 });
});

test('dedup snapshot - a broker that lost the topic does not re-create the snapshot of a topic since deleted', async (t) => {
  const store = await embeddedStore(t);
  const log = new MemoryLog();
  const stale = await Deduplication.recover(store, log.asLog(), PATH, silentLogger);
  await send(stale, log, 'p', 0);
  await stale.snapshot();
  await store.delete(dedupKey(PATH));
  await send(stale, log, 'p', 1);
  await stale.close();
  t.is(await store.get(dedupKey(PATH)), undefined);
});

test('dedup snapshot - a write that landed though its answer was lost does not make the owner stale', async (t) => {
  const store = await embeddedStore(t);
  let loseAnswer = false;
  const flaky = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop !== 'put') return Reflect.get(target, prop, receiver);
      return async (...args: Parameters<MetadataStore['put']>) => {
        const version = await target.put(...args);
        if (loseAnswer) {
          loseAnswer = false;
          throw new UnavailableError('etcd request timed out');
        }
        return version;
      };
    },
  });
  const log = new MemoryLog();
  const d = await Deduplication.recover(flaky, log.asLog(), PATH, silentLogger);
  for (let seq = 0; seq < 3; seq++) await send(d, log, 'p', seq);
  loseAnswer = true;
  await t.throwsAsync(d.snapshot(), { instanceOf: UnavailableError });
  // The same state again (a close with nothing new): the stored value is ours.
  await d.snapshot();
  t.deepEqual(await dedupCursor(log), { ledgerId: 1, entryId: 2 });
  await send(d, log, 'p', 3);
  await d.snapshot();
  t.deepEqual(await storedPosition(store), { ledgerId: 1, entryId: 3 }, 'the owner goes on snapshotting');
});
