import test from 'ava';
import { type PerfReceiver, runConsume } from './consume-driver.js';
import { PayloadFactory } from './payload.js';
import type { PerfClock } from './perf-clock.js';

const EPOCH = 1_700_000_000_000;

function virtualClock(): PerfClock & { advance(ms: number): void } {
  let t = 0;
  return {
    now: () => t,
    epochMs: (m) => EPOCH + m,
    advance: (ms) => {
      t += ms;
    },
    sleep: async (ms) => {
      t += ms;
    },
  };
}

/** Delivers `inbox` in order, each message at its send time + delay; then times out. */
function inboxReceiver(
  clock: ReturnType<typeof virtualClock>,
  inbox: { sentAt: number; delay: number; value: Buffer }[],
  onAck: (m: Buffer) => void,
): PerfReceiver<Buffer> {
  return {
    receive: async (timeoutMs) => {
      const next = inbox.shift();
      if (!next) {
        clock.advance(timeoutMs);
        return undefined;
      }
      clock.advance(Math.max(0, next.sentAt + next.delay - clock.now()));
      return next.value;
    },
    valueOf: (m) => m,
    ack: onAck,
  };
}

test('consume driver - end-to-end latency runs from the timestamp the producer wrote to delivery', async (t) => {
  const clock = virtualClock();
  const payloads = new PayloadFactory(100);
  // 100 messages sent at t=0..99 ms, each delivered 7 ms after it was sent; then silence.
  const inbox = Array.from({ length: 100 }, (_, i) => ({
    sentAt: i,
    delay: 7,
    value: payloads.make(EPOCH + i),
  }));
  inbox.push({ sentAt: 100, delay: 7, value: Buffer.from('not from perf produce') });
  const acked: Buffer[] = [];
  const receiver = inboxReceiver(clock, inbox, (m) => acked.push(m));
  const r = await runConsume(receiver, { idleTimeoutSec: 1, clock });
  t.is(r.received, 101);
  t.is(acked.length, 101);
  t.is(r.untimed, 1);
  t.is(r.endToEndLatencyMs.count, 100);
  // HDR histograms keep 3 significant digits: 7 ms reads back as 7.00x ms.
  t.true(Math.abs(r.endToEndLatencyMs.p50 - 7) < 0.01, `p50 ${r.endToEndLatencyMs.p50}`);
  t.true(Math.abs(r.endToEndLatencyMs.max - 7) < 0.01, `max ${r.endToEndLatencyMs.max}`);
  // Rates are over the span from the first to the last message (7 ms .. 107 ms), not over the idle tail.
  t.is(r.elapsedSec, 0.1);
  t.is(Math.round(r.msgPerSec), 1010);
});

test('consume driver - the duration ends a run that never saw a message', async (t) => {
  const clock = virtualClock();
  const receiver: PerfReceiver<Buffer> = {
    receive: async (timeoutMs) => {
      clock.advance(timeoutMs);
      return undefined;
    },
    valueOf: (m) => m,
    ack: () => undefined,
  };
  const r = await runConsume(receiver, { durationSec: 2, idleTimeoutSec: 1, clock });
  t.is(r.received, 0);
  t.is(r.msgPerSec, 0);
  t.is(r.endToEndLatencyMs.count, 0);
  t.true(clock.now() >= 2000);
});

test('consume driver - messages sent during the warm-up are acked but left out of the results', async (t) => {
  const clock = virtualClock();
  const payloads = new PayloadFactory(100);
  // One message every 10 ms for 2 s; those of the first second take 8 ms to arrive, the rest 2 ms.
  const inbox = Array.from({ length: 200 }, (_, i) => ({
    sentAt: i * 10,
    delay: i < 100 ? 8 : 2,
    value: payloads.make(EPOCH + i * 10),
  }));
  let acked = 0;
  const receiver = inboxReceiver(clock, inbox, () => {
    acked++;
  });
  // The idle timeout is shorter than the warm-up: warm-up messages keep the run alive.
  const r = await runConsume(receiver, { idleTimeoutSec: 0.5, warmUpSec: 1, clock });
  t.is(acked, 200);
  t.is(r.warmUpReceived, 100);
  t.is(r.received, 100);
  t.is(r.endToEndLatencyMs.count, 100);
  t.true(Math.abs(r.endToEndLatencyMs.max - 2) < 0.01, `max ${r.endToEndLatencyMs.max}`);
  // From the first measured delivery (1,002 ms) to the last (1,992 ms).
  t.is(r.elapsedSec, 0.99);
});

test('consume driver - with receiveBatch, every message of a batch is counted, timed and acked', async (t) => {
  const clock = virtualClock();
  const payloads = new PayloadFactory(100);
  // 10 batches of 10 messages; batch k sent at 10k ms and delivered 3 ms later.
  const batches = Array.from({ length: 10 }, (_, k) =>
    Array.from({ length: 10 }, () => payloads.make(EPOCH + 10 * k)),
  );
  const acked: Buffer[] = [];
  let singles = 0;
  const receiver: PerfReceiver<Buffer> = {
    receive: async () => {
      singles++;
      return undefined;
    },
    receiveBatch: async (max, timeoutMs) => {
      t.true(max >= 10);
      const k = 10 - batches.length;
      const next = batches.shift();
      if (!next) {
        clock.advance(timeoutMs);
        return [];
      }
      clock.advance(Math.max(0, 10 * k + 3 - clock.now()));
      return next;
    },
    valueOf: (m) => m,
    ack: (m) => acked.push(m),
  };
  const r = await runConsume(receiver, { idleTimeoutSec: 1, clock });
  t.is(singles, 0, 'receive is not used when receiveBatch is there');
  t.is(r.received, 100);
  t.is(acked.length, 100);
  t.is(r.endToEndLatencyMs.count, 100);
  t.true(Math.abs(r.endToEndLatencyMs.p50 - 3) < 0.01, `p50 ${r.endToEndLatencyMs.p50}`);
  t.true(Math.abs(r.endToEndLatencyMs.max - 3) < 0.01, `max ${r.endToEndLatencyMs.max}`);
});
