import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { DEFAULT_HEAP_GROWING_PERCENT, stopPretenuring, tuneGarbageCollector } from './gc-tuning.js';

test('gc tuning - the default, an override, 0 for V8 heuristics, and bad values refused', (t) => {
  t.is(tuneGarbageCollector({}), DEFAULT_HEAP_GROWING_PERCENT);
  t.is(tuneGarbageCollector({ SLUICE_HEAP_GROWING_PERCENT: '150' }), 150);
  t.is(tuneGarbageCollector({ SLUICE_HEAP_GROWING_PERCENT: '0' }), undefined);
  for (const bad of ['-1', 'lots', '1.5', '20000']) {
    t.throws(() => tuneGarbageCollector({ SLUICE_HEAP_GROWING_PERCENT: bad }), {
      message: /SLUICE_HEAP_GROWING_PERCENT must be an integer from 0 to 10000/,
    });
  }
});

test('gc tuning - pretenuring is off unless asked for; bad values refused', (t) => {
  t.true(stopPretenuring({}));
  t.true(stopPretenuring({ SLUICE_ALLOCATION_SITE_PRETENURING: 'false' }));
  t.false(stopPretenuring({ SLUICE_ALLOCATION_SITE_PRETENURING: 'true' }));
  t.throws(() => stopPretenuring({ SLUICE_ALLOCATION_SITE_PRETENURING: 'maybe' }), {
    message: /SLUICE_ALLOCATION_SITE_PRETENURING must be true or false/,
  });
});

test('gc tuning - with pretenuring stopped, V8 makes no pretenuring decisions', (t) => {
  const module = fileURLToPath(new URL('./gc-tuning.ts', import.meta.url));
  // Objects from one site that mostly survive young collections: what V8 pretenures.
  const code = `
    import { setFlagsFromString } from 'node:v8';
    import { stopPretenuring } from ${JSON.stringify(module)};
    setFlagsFromString('--trace-pretenuring-statistics');
    if (process.argv[1] === 'stop') stopPretenuring({});
    const keep = [];
    for (let i = 0; i < 3e6; i++) {
      keep.push({ i });
      if (keep.length > 200000) keep.length = 0;
    }`;
  const decisions = (mode: string): number => {
    const r = spawnSync(process.execPath, ['--import=tsx', '--input-type=module', '-e', code, mode], {
      encoding: 'utf8',
    });
    t.is(r.status, 0, r.stderr);
    return r.stdout.split('\n').filter((l) => l.includes('pretenuring:')).length;
  };
  t.true(decisions('keep') > 0, 'V8 weighs pretenuring by default');
  t.is(decisions('stop'), 0);
});
