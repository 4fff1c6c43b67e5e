import { tmpdir } from 'node:os';
import { createRegistry, silentLogger } from '@sluice/common';
import test from 'ava';
import { DiskWatchdog } from './disk-watchdog.js';
import { createBookieMetrics } from './metrics.js';

function watchdog(lwmThreshold: number, releaseSpace: () => Promise<number>) {
  const changes: (string | undefined)[] = [];
  const w = new DiskWatchdog({
    dirs: [tmpdir()],
    threshold: 1,
    lwmThreshold,
    intervalMs: 60_000,
    logger: silentLogger,
    metrics: createBookieMetrics(createRegistry()),
    onChange: (reason) => changes.push(reason),
    releaseSpace,
  });
  return { w, changes };
}

test('disk watchdog - spare files are given back while a disk is over the lower threshold', async (t) => {
  let calls = 0;
  // Any disk is at or over a lower threshold of 0.
  const { w, changes } = watchdog(0, async () => {
    calls++;
    return 1;
  });
  await w.check();
  t.is(calls, 1);
  t.true(w.last.length === 1 && w.last[0]!.totalBytes > 0, 'the usage is measured again afterwards');
  t.deepEqual(changes, [], 'under the threshold itself, nothing changes');
});

test('disk watchdog - spare files stay while every disk is under the lower threshold', async (t) => {
  let calls = 0;
  const { w } = watchdog(1, async () => {
    calls++;
    return 0;
  });
  await w.check();
  t.is(calls, 0);
});
