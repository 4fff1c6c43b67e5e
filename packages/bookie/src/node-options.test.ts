import test from 'ava';
import { BOOKIE_NODE_OPTIONS, bookieNodeOptions } from './node-options.js';

test('bookie node options - added to what the environment has, never over a semi-space set there', (t) => {
  t.is(bookieNodeOptions(undefined), BOOKIE_NODE_OPTIONS);
  t.is(bookieNodeOptions(''), BOOKIE_NODE_OPTIONS);
  t.is(bookieNodeOptions('--enable-source-maps'), `--enable-source-maps ${BOOKIE_NODE_OPTIONS}`);
  t.is(bookieNodeOptions('--max-semi-space-size=8'), '--max-semi-space-size=8');
});
