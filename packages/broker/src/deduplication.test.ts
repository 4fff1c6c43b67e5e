import {
  InvalidArgumentError,
  type Position,
  ResourceExhaustedError,
  UnavailableError,
} from '@sluice/common';
import type { BatchHeader__Output } from '@sluice/proto';
import test from 'ava';
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
