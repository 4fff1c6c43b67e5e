import test from 'ava';
import { BOOKIE_NODE_OPTIONS, bookieNodeOptions, semiSpaceChosen } from './node-options.js';

test('bookie node options - added to what the environment has, never over a semi-space set there', (t) => {
  t.is(bookieNodeOptions(undefined), BOOKIE_NODE_OPTIONS);
  t.is(bookieNodeOptions(''), BOOKIE_NODE_OPTIONS);
  t.is(bookieNodeOptions('--enable-source-maps'), `--enable-source-maps ${BOOKIE_NODE_OPTIONS}`);
  t.is(bookieNodeOptions('--max-semi-space-size=8'), '--max-semi-space-size=8');
});

test('bookie node options - a semi-space size from the command line or NODE_OPTIONS counts as chosen', (t) => {
  t.false(semiSpaceChosen([], undefined));
  t.false(semiSpaceChosen(['--enable-source-maps'], '--v8-pool-size=1'));
  t.true(semiSpaceChosen(['--max-semi-space-size=32'], undefined));
  t.true(semiSpaceChosen([], '--v8-pool-size=1 --max-semi-space-size=64'));
});
