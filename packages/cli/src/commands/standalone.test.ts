import { bookieConfigSchema } from '@sluice/bookie';
import test from 'ava';
import { brokerPort, standaloneBookieConfig } from './standalone.js';

test("standalone - its bookie takes sluice bookie's defaults (one journal write in flight aside) and SLUICE_BOOKIE_* storage settings, not where it listens", (t) => {
  const defaults = bookieConfigSchema.parse({ metadata: 'etcd://x', dataDir: '/elsewhere' });
  const base = standaloneBookieConfig('/data', 4181, {});
  t.is(base.entryLogDirectBytes, defaults.entryLogDirectBytes);
  t.is(base.entryLogDirectBacklogBytes, defaults.entryLogDirectBacklogBytes);
  t.is(base.metadata, 'embedded:///data/metadata');
  t.is(base.dataDir, '/data/bookie');
  t.is(base.port, 4181);
  t.is(base.httpPort, -1);
  t.is(defaults.journalMaxWritesInFlight, 2);
  t.is(base.journalMaxWritesInFlight, 1, 'the CPU-bound standalone writes one journal group at a time');

  const tuned = standaloneBookieConfig('/data', 4181, {
    SLUICE_BOOKIE_ENTRY_LOG_DIRECT_BYTES: '0',
    SLUICE_BOOKIE_ENTRY_LOG_DIRECT_BACKLOG_BYTES: '1MiB',
    SLUICE_BOOKIE_WRITE_CACHE_BYTES: '128MiB',
    SLUICE_BOOKIE_PORT: '9999',
    SLUICE_BOOKIE_JOURNAL_MAX_WRITES_IN_FLIGHT: '2',
  });
  t.is(tuned.journalMaxWritesInFlight, 2, 'the env chooses two journal writes in flight');
  t.is(tuned.entryLogDirectBytes, 0, 'the env turns writing once off');
  t.is(tuned.entryLogDirectBacklogBytes, 1024 * 1024);
  t.is(tuned.writeCacheBytes, 128 * 1024 * 1024);
  t.is(tuned.port, 4181, 'where it listens stays the standalone’s');
});

test('standalone - --port 0 is refused in one line (the broker advertises the port it is given); others pass', (t) => {
  t.throws(() => brokerPort('0'), {
    name: 'InvalidArgumentError',
    message: /--port '0' is invalid.*1 to 65535/,
  });
  t.throws(() => brokerPort('70000'), { name: 'InvalidArgumentError' });
  t.is(brokerPort('6650'), 6650);
});
