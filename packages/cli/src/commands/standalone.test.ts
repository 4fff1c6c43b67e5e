import test from 'ava';
import { STANDALONE_DIRECT_BYTES, standaloneBookieConfig } from './standalone.js';

test('standalone - its bookie writes large entries once by default and takes SLUICE_BOOKIE_* storage settings', (t) => {
  const base = standaloneBookieConfig('/data', 4181, {});
  t.is(base.entryLogDirectBytes, STANDALONE_DIRECT_BYTES);
  t.is(base.dataDir, '/data/bookie');
  t.is(base.port, 4181);
  t.is(base.httpPort, -1);

  const tuned = standaloneBookieConfig('/data', 4181, {
    SLUICE_BOOKIE_ENTRY_LOG_DIRECT_BYTES: '0',
    SLUICE_BOOKIE_WRITE_CACHE_BYTES: '128MiB',
    SLUICE_BOOKIE_PORT: '9999',
  });
  t.is(tuned.entryLogDirectBytes, 0, 'the env turns writing once off');
  t.is(tuned.writeCacheBytes, 128 * 1024 * 1024);
  t.is(tuned.port, 4181, 'where it listens stays the standalone’s');
});
