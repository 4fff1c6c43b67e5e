import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '@sluice/common';
import { EmbeddedMetadataStore } from '@sluice/metadata';
import test from 'ava';
import { BOOKIES_AVAILABLE_PREFIX, Registrar, type RegistrationValue } from './registration.js';

test('registration - free space is re-published at most every refresh interval and only when it moved noticeably', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bookie-registration-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const store = await EmbeddedMetadataStore.open({ dataDir: dir });
  t.teardown(() => store.close());
  const total = 100 * 1024 ** 3;
  let free = 50 * 1024 ** 3;
  let now = 1_000_000;
  const registrar = new Registrar({
    store,
    identity: { bookieId: 'b-1', instanceId: 'i-1', createdAt: 0 },
    sessionTtlMs: 10_000,
    logger: silentLogger,
    capacityRefreshMs: 30_000,
    now: () => now,
    describe: () => ({
      address: '127.0.0.1:1',
      rack: 'r',
      readOnly: false,
      freeBytes: free,
      totalBytes: total,
    }),
  });
  await registrar.start();
  t.teardown(() => registrar.stop());
  const key = `${BOOKIES_AVAILABLE_PREFIX}b-1`;
  const published = async () => {
    const kv = await store.get(key);
    return {
      free: (JSON.parse(kv!.value.toString('utf8')) as RegistrationValue).freeBytes,
      rev: kv!.version,
    };
  };
  const first = await published();
  t.is(first.free, free);

  // A big change, but too soon after the last publish: nothing is written.
  free -= 10 * 1024 ** 3;
  now += 10_000;
  await registrar.refreshCapacity();
  t.deepEqual(await published(), first);

  // Late enough, but the change since the last publish is under 1% of the disk.
  free = first.free - 512 * 1024 ** 2;
  now += 60_000;
  await registrar.refreshCapacity();
  t.deepEqual(await published(), first);

  // Late enough and moved by more than 1%: published once.
  free = first.free - 2 * 1024 ** 3;
  await registrar.refreshCapacity();
  const second = await published();
  t.is(second.free, free);
  t.true(second.rev > first.rev);

  // The interval counts from that publish again.
  free -= 5 * 1024 ** 3;
  now += 1000;
  await registrar.refreshCapacity();
  t.deepEqual(await published(), second);
  now += 30_000;
  await registrar.refreshCapacity();
  t.is((await published()).free, free);
});
