import { UnavailableError } from '@sluice/common';
import test from 'ava';
import type { BookieInfo } from './bookie-directory.js';
import { RackAwarePlacementPolicy } from './placement-policy.js';

const bookie = (id: string, rack?: string, readOnly = false): BookieInfo => ({
  bookieId: id,
  address: `${id}:3181`,
  readOnly,
  ...(rack ? { rack } : {}),
});

test('placement - ensembles are distinct writable bookies', (t) => {
  const policy = new RackAwarePlacementPolicy();
  const bookies = [bookie('a'), bookie('b'), bookie('c', undefined, true), bookie('d'), bookie('a')];
  for (let i = 0; i < 50; i++) {
    const e = policy.newEnsemble(3, bookies);
    t.is(new Set(e).size, 3);
    t.false(e.includes('c'));
  }
  t.throws(() => policy.newEnsemble(4, bookies), {
    instanceOf: UnavailableError,
    message: /only 3 are available/,
  });
  t.throws(() => policy.newEnsemble(3, bookies, new Set(['a'])), { instanceOf: UnavailableError });
});

test('placement - ensembles spread across racks', (t) => {
  const policy = new RackAwarePlacementPolicy();
  const bookies = [
    bookie('r1a', 'r1'),
    bookie('r1b', 'r1'),
    bookie('r1c', 'r1'),
    bookie('r2a', 'r2'),
    bookie('r2b', 'r2'),
    bookie('r3a', 'r3'),
  ];
  const rackOf = (id: string) => id.slice(0, 2);
  for (let i = 0; i < 50; i++) {
    t.is(new Set(policy.newEnsemble(3, bookies).map(rackOf)).size, 3);
    t.is(new Set(policy.newEnsemble(4, bookies).map(rackOf)).size, 3);
  }
});

test('placement - a replacement is outside the ensemble, writable, and on an unused rack when one exists', (t) => {
  const policy = new RackAwarePlacementPolicy();
  const bookies = [
    bookie('r1a', 'r1'),
    bookie('r1b', 'r1'),
    bookie('r2a', 'r2'),
    bookie('r3a', 'r3'),
    bookie('r3b', 'r3', true),
  ];
  for (let i = 0; i < 30; i++) {
    // r3a failed: r3b is read-only, so the replacement must be r1b (r2 is in use too, r1 only once less).
    const r = policy.replaceBookie(['r1a', 'r2a', 'r3a'], 2, bookies, new Set(['r3a']));
    t.is(r, 'r1b');
  }
  t.throws(() => policy.replaceBookie(['r1a', 'r1b', 'r2a', 'r3a'], 0, bookies, new Set(['r1a'])), {
    instanceOf: UnavailableError,
  });
});
