import test from 'ava';
import { semiSpaceSet } from './bookie.js';

test('bookie command - a semi-space size from the command line or NODE_OPTIONS counts as chosen', (t) => {
  t.false(semiSpaceSet([], undefined));
  t.false(semiSpaceSet(['--enable-source-maps'], '--v8-pool-size=1'));
  t.true(semiSpaceSet(['--max-semi-space-size=32'], undefined));
  t.true(semiSpaceSet([], '--v8-pool-size=1 --max-semi-space-size=64'));
});
