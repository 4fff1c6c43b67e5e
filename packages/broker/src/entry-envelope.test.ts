import { InvalidArgumentError } from '@sluice/common';
import test from 'ava';
import {
  decodeEnvelope,
  decodeEnvelopeOf,
  encodeEnvelope,
  encodeEnvelopeParts,
  ownsItsMemory,
} from './entry-envelope.js';

const header = {
  publishTime: 1_700_000_000_123,
  producerName: 'producer-∑-é',
  firstSequenceId: 2 ** 52,
  count: 100,
  codec: 1,
  uncompressedSize: 102_400,
  deliverAt: 1_700_000_060_000,
  key: '',
};

test('entry envelope - parts are the header and the payload itself, and join to the one-buffer form', (t) => {
  const payload = Buffer.alloc(1000, 0x42);
  const parts = encodeEnvelopeParts(header, payload);
  t.is(parts[1], payload, 'the payload is not copied');
  const whole = encodeEnvelope(header, payload);
  t.true(Buffer.concat(parts).equals(whole));
  const env = decodeEnvelope(whole);
  t.like(env, header);
  t.true(env.payload.equals(payload));
});

test('entry envelope - empty payload and multi-byte names keep their byte lengths', (t) => {
  const h = { ...header, producerName: '生产者', key: 'ключ' };
  const env = decodeEnvelope(encodeEnvelope(h, Buffer.alloc(0)));
  t.is(env.producerName, '生产者');
  t.is(env.key, 'ключ');
  t.is(env.payload.length, 0);
});

test('entry envelope - a key over 64 KiB is refused with a clear error', (t) => {
  t.throws(() => encodeEnvelope({ ...header, key: 'k'.repeat(0x10000) }, Buffer.alloc(1)), {
    instanceOf: InvalidArgumentError,
    message: /under 64 KiB/,
  });
});

test('entry envelope - an entry still in its parts decodes without joining, the payload the same Buffer', (t) => {
  const payload = Buffer.alloc(1000, 0x42);
  const parts = encodeEnvelopeParts({ ...header, key: 'k1' }, payload);
  const fromParts = decodeEnvelopeOf({
    parts,
    get payload(): Buffer {
      throw new Error('parts must not be joined');
    },
  });
  t.like(fromParts, { ...header, key: 'k1' });
  t.is(fromParts.payload, payload);
  const whole = Buffer.concat(parts);
  t.deepEqual(decodeEnvelopeOf({ payload: whole }), decodeEnvelope(whole));
  // A header part that runs into its payload is not a Sluice envelope in parts.
  t.throws(() => decodeEnvelope(whole, payload), { message: /header part does not end/ });
});

test('entry envelope - a payload is kept as received only when it is most of its memory', (t) => {
  const request = Buffer.allocUnsafe(128 * 1024 + 60);
  t.true(ownsItsMemory(request.subarray(60)), 'a batch and its request framing');
  t.false(ownsItsMemory(request.subarray(60, 60 + 16 * 1024)), 'one batch of a request holding several');
  const pooled = Buffer.allocUnsafe(200);
  t.true(pooled.buffer.byteLength > 4096, "Node's shared pool");
  t.false(ownsItsMemory(pooled), 'a small request in the shared pool is copied');
  t.true(ownsItsMemory(Buffer.alloc(10)), 'a small Buffer of its own');
});
