import { crc32c as nativeCrc32c } from '@node-rs/crc32';
import test from 'ava';
import { z } from 'zod';
import {
  BadVersionError,
  crc32c,
  formatMessageId,
  fromGrpcError,
  InvalidArgumentError,
  loadConfig,
  ManualClock,
  NotOwnerError,
  parseDuration,
  parseMessageId,
  parseSize,
  retry,
  toServiceError,
  UnavailableError,
} from './index.js';

test('crc32c - matches the Castagnoli check value', (t) => {
  t.is(crc32c(Buffer.from('123456789')), 0xe3069283);
  const whole = crc32c(Buffer.from('hello world'));
  t.is(crc32c(Buffer.from(' world'), crc32c(Buffer.from('hello'))), whole);
});

test('crc32c - small inputs (JS table) and large ones (native) agree, also when chained across sizes', (t) => {
  const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 131 + 7) & 0xff));
  for (const n of [0, 1, 24, 52, 191, 192, 193, 1000]) {
    t.is(crc32c(data.subarray(0, n)), nativeCrc32c(data.subarray(0, n)) >>> 0, `${n} bytes`);
  }
  const whole = crc32c(data);
  for (const cut of [1, 24, 191, 192, 500, 900]) {
    t.is(crc32c(data.subarray(cut), crc32c(data.subarray(0, cut))), whole, `split at ${cut}`);
  }
});

test('errors - round-trip through gRPC status with code and details', (t) => {
  const err = new NotOwnerError('topic is owned elsewhere', { details: { owner: '10.0.0.2:6650' } });
  const wire = toServiceError(err);
  t.is(wire.code, 9);
  const back = fromGrpcError(wire);
  t.true(back instanceof NotOwnerError);
  t.is(back.details.owner, '10.0.0.2:6650');
  t.true(back.retriable);
  t.is(back.message, 'topic is owned elsewhere');
});

test('errors - a bare gRPC status maps to a typed error', (t) => {
  const back = fromGrpcError({ code: 14, details: 'connection refused', message: 'x' });
  t.true(back instanceof UnavailableError);
  t.true(back.retriable);
});

test('config - flags beat env beat defaults, bad values name the key', (t) => {
  const schema = z.object({
    port: z.coerce.number().int().default(6650),
    dataDir: z.string().default('./data'),
  });
  const env = { SLUICE_PORT: '7000', SLUICE_DATA_DIR: '/env' };
  t.deepEqual(loadConfig(schema, { env, envPrefix: 'SLUICE_' }), { port: 7000, dataDir: '/env' });
  t.deepEqual(loadConfig(schema, { env, envPrefix: 'SLUICE_', flags: { port: 1 } }), {
    port: 1,
    dataDir: '/env',
  });
  const err = t.throws(() => loadConfig(schema, { env: { SLUICE_PORT: 'abc' }, envPrefix: 'SLUICE_' }));
  t.true(err instanceof InvalidArgumentError);
  t.regex(err!.message, /'port'/);
});

test('config - sizes and durations parse', (t) => {
  t.is(parseSize('10G'), 10 * 1024 ** 3);
  t.is(parseSize('512K'), 512 * 1024);
  t.is(parseDuration('7d'), 7 * 86_400_000);
  t.is(parseDuration('250ms'), 250);
  t.throws(() => parseSize('ten'), { instanceOf: InvalidArgumentError });
});

test('ids - message ids print and parse', (t) => {
  t.is(formatMessageId({ ledgerId: 5, entryId: 7, batchIndex: 2, partition: -1 }), '5:7:2');
  t.deepEqual(parseMessageId('5:7:2:3'), { ledgerId: 5, entryId: 7, batchIndex: 2, partition: 3 });
  t.throws(() => parseMessageId('5:x'), { instanceOf: InvalidArgumentError });
});

test('retry - retries retriable errors with backoff, not others', async (t) => {
  let calls = 0;
  const clock = new ManualClock();
  const p = retry(
    async () => {
      calls++;
      if (calls < 3) throw new UnavailableError('down');
      return 'ok';
    },
    { clock, minDelayMs: 10 },
  );
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setImmediate(r));
    clock.advance(100);
  }
  t.is(await p, 'ok');
  t.is(calls, 3);
  let fatalCalls = 0;
  await t.throwsAsync(
    retry(
      async () => {
        fatalCalls++;
        throw new BadVersionError('x');
      },
      { retries: 0 },
    ),
  );
  t.is(fatalCalls, 1);
});
