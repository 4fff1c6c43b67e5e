import test from 'ava';
import { PayloadFactory, readSendTimestamp } from './payload.js';

const EPOCH = Date.UTC(2026, 0, 1);

test('payload - take reuses a buffer given back and stamps the new send time', (t) => {
  const payloads = new PayloadFactory(64, 4);
  const first = payloads.take(EPOCH);
  const body = Buffer.from(first.subarray(8));
  payloads.give(first);
  const second = payloads.take(EPOCH + 5);
  t.is(second, first);
  t.is(readSendTimestamp(second, EPOCH + 10), EPOCH + 5);
  t.deepEqual(second.subarray(8), body);
  // Nothing left to reuse: a fresh buffer with the same random body.
  const third = payloads.take(EPOCH + 6);
  t.not(third, first);
  t.deepEqual(third.subarray(8), body);
});

test('payload - the free list keeps at most maxFree buffers', (t) => {
  const payloads = new PayloadFactory(16, 2);
  const out = [payloads.take(EPOCH), payloads.take(EPOCH), payloads.take(EPOCH)];
  for (const b of out) payloads.give(b);
  const again = [payloads.take(EPOCH), payloads.take(EPOCH), payloads.take(EPOCH)];
  t.is(again.filter((b) => out.includes(b)).length, 2);
});
