import { UnavailableError } from '@sluice/common';
import test from 'ava';
import { BatchOutcome, batchReceipt, messageIdAt } from './batch-outcome.js';

test('batch outcome - each message of a batch resolves with its own id', async (t) => {
  const outcome = new BatchOutcome();
  const sends = [0, 1, 2].map((i) => outcome.promise.then(messageIdAt(i)));
  outcome.resolve(batchReceipt(12, 7, 0, -1));
  t.deepEqual(await Promise.all(sends), ['12:7:0', '12:7:1', '12:7:2']);
});

test('batch outcome - ids carry the partition and start at the receipt batch index', async (t) => {
  const outcome = new BatchOutcome();
  const sends = [0, 1].map((i) => outcome.promise.then(messageIdAt(i)));
  outcome.resolve(batchReceipt(3, 4, 10, 2));
  t.deepEqual(await Promise.all(sends), ['3:4:10:2', '3:4:11:2']);
});

test('batch outcome - a refused batch rejects every message with the same error', async (t) => {
  const outcome = new BatchOutcome();
  const sends = [0, 1].map((i) => outcome.promise.then(messageIdAt(i)));
  const err = new UnavailableError('broker went away');
  outcome.reject(err);
  for (const s of sends) t.is(await t.throwsAsync(s), err);
});
