import test from 'ava';
import { RateScheduler } from './rate-scheduler.js';

test('rate scheduler - sends are due on a fixed grid from the start time', (t) => {
  const s = new RateScheduler(1000, 100);
  t.is(s.due(99), 0);
  t.is(s.msUntilNext(99), 1);
  t.is(s.due(100), 1);
  t.is(s.take(100), 100);
  t.is(s.msUntilNext(100.5), 0.5);
  t.is(s.due(100.5), 0);
  t.is(s.take(101), 101);
  t.is(s.taken, 2);
});

test('rate scheduler - a stall leaves the schedule in place, so every delayed send keeps its intended time', (t) => {
  const s = new RateScheduler(1000, 0);
  t.is(s.take(0), 0);
  // Nothing could be sent for 50 ms: the 50 sends that came due meanwhile keep their own intended times.
  t.is(s.due(50), 50);
  const intended = Array.from({ length: 50 }, () => s.take(50));
  t.deepEqual(
    intended,
    Array.from({ length: 50 }, (_, i) => i + 1),
  );
  t.is(s.due(50), 0);
  t.is(s.msUntilNext(50), 1);
});

test('rate scheduler - rate 0 sends whenever asked, intended at the moment of asking', (t) => {
  const s = new RateScheduler(0, 0);
  t.true(s.unlimited);
  t.is(s.msUntilNext(12.5), 0);
  t.is(s.take(12.5), 12.5);
  t.is(s.take(13), 13);
});

test('rate scheduler - a negative or non-finite rate is refused with the reason', (t) => {
  t.throws(() => new RateScheduler(-1, 0), { message: /rate '-1' must be .* ≥ 0/ });
  t.throws(() => new RateScheduler(Number.NaN, 0), { message: /rate 'NaN'/ });
});
