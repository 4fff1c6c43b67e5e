import test from 'ava';
import { DEFAULT_HEAP_GROWING_PERCENT, tuneGarbageCollector } from './gc-tuning.js';

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
