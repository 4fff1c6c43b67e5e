import test from 'ava';
import type { PerfClock } from './perf-clock.js';
import { type PerfSender, runProduce } from './produce-driver.js';

/**
 * Virtual time: sleeping first lets pending receipts run (one macrotask), then
 * advances the clock, unless the sleep was cancelled meanwhile.
 */
function virtualClock(): PerfClock & { advance(ms: number): void } {
  let t = 0;
  return {
    now: () => t,
    epochMs: (m) => 1_700_000_000_000 + m,
    advance: (ms) => {
      t += ms;
    },
    sleep: async (ms, signal) => {
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (!signal?.aborted) t += ms;
    },
  };
}

test('produce driver - at a fixed rate a stall delays every send scheduled during it (no coordinated omission)', async (t) => {
  const clock = virtualClock();
  let n = 0;
  const sender: PerfSender = {
    send: async () => {
      // Send number 20 blocks the producer for 200 ms (a GC pause, a full socket): receipts arrive after it.
      if (n++ === 20) clock.advance(200);
    },
  };
  const r = await runProduce([sender], {
    rate: 200,
    messageSize: 64,
    durationSec: 1,
    maxInFlight: 1000,
    clock,
  });
  // The schedule is kept: all 200 sends of the second still happen.
  t.is(r.sent, 200);
  t.is(r.published, 200);
  t.is(r.errors, 0);
  // ~40 sends were due during the stall; measured from their intended times they waited up to 200 ms.
  // Measuring from the actual send would show one slow message and a p95 of ~0.
  t.true(r.publishLatencyMs.p95 >= 100, `p95 ${r.publishLatencyMs.p95}`);
  t.true(r.publishLatencyMs.max >= 195, `max ${r.publishLatencyMs.max}`);
  t.true(r.publishLatencyMs.p50 <= 5, `p50 ${r.publishLatencyMs.p50}`);
});

test('produce driver - sends intended before the end that waited for window room are still made and measured', async (t) => {
  const clock = virtualClock();
  let n = 0;
  const sender: PerfSender = {
    send: async () => {
      // Send number 90 (intended at 900 ms) holds the only window slot for 300 ms, past the end at 1000 ms.
      if (n++ === 90) clock.advance(300);
    },
  };
  const r = await runProduce([sender], {
    rate: 100,
    messageSize: 64,
    durationSec: 1,
    maxInFlight: 1,
    clock,
  });
  // Sends 91..99 were intended at 910..990 ms: leaving them out would hide the stall they waited through.
  t.is(r.sent, 100);
  t.is(r.published, 100);
  t.true(r.publishLatencyMs.max >= 250, `max ${r.publishLatencyMs.max}`);
});

test('produce driver - at rate 0 sends never exceed the in-flight window', async (t) => {
  const clock = virtualClock();
  let outstanding = 0;
  let peak = 0;
  const sender: PerfSender = {
    send: () => {
      outstanding++;
      peak = Math.max(peak, outstanding);
      return new Promise<void>((resolve) =>
        setImmediate(() => {
          clock.advance(0.01);
          outstanding--;
          resolve();
        }),
      );
    },
  };
  const r = await runProduce([sender, sender], {
    rate: 0,
    messageSize: 64,
    durationSec: 0.5,
    maxInFlight: 8,
    clock,
  });
  t.true(peak <= 16, `peak ${peak}`);
  t.true(r.published > 100);
  t.is(r.published, r.sent);
  t.is(r.unacknowledged, 0);
});

test('produce driver - failed sends are counted with the first error and free their window slot', async (t) => {
  const clock = virtualClock();
  let n = 0;
  const sender: PerfSender = {
    send: async () => {
      if (n++ % 2 === 0) throw new Error('topic is fenced');
    },
  };
  const r = await runProduce([sender], { rate: 100, messageSize: 16, durationSec: 1, maxInFlight: 1, clock });
  t.is(r.sent, 100);
  t.is(r.errors, 50);
  t.is(r.published, 50);
  t.is(r.firstError, 'topic is fenced');
});

test('produce driver - message size below the timestamp header is refused', async (t) => {
  const sender: PerfSender = { send: async () => undefined };
  await t.throwsAsync(runProduce([sender], { rate: 0, messageSize: 4, durationSec: 1, maxInFlight: 1 }), {
    message: /message size '4' must be an integer ≥ 8/,
  });
});

test('produce driver - payloads are reused only after their send was acknowledged', async (t) => {
  const clock = virtualClock();
  const outstanding = new Set<Buffer>();
  const seen = new Set<Buffer>();
  let reusedWhileOutstanding = 0;
  let sends = 0;
  const sender: PerfSender = {
    send: (payload) => {
      if (outstanding.has(payload)) reusedWhileOutstanding++;
      outstanding.add(payload);
      seen.add(payload);
      sends++;
      return new Promise<void>((resolve) =>
        setImmediate(() => {
          clock.advance(0.1);
          outstanding.delete(payload);
          resolve();
        }),
      );
    },
  };
  const r = await runProduce([sender], { rate: 0, messageSize: 32, durationSec: 0.1, maxInFlight: 8, clock });
  t.is(reusedWhileOutstanding, 0);
  t.true(sends > 8, `sends ${sends}`);
  t.true(seen.size <= 8, `distinct payloads ${seen.size}`);
  t.is(r.published, sends);
});

test('produce driver - warm-up sends are made and shown in progress lines but left out of the results', async (t) => {
  const clock = virtualClock();
  let sends = 0;
  const sender: PerfSender = {
    send: async () => {
      // The first second is slow (a cold process): each send blocks 5 ms.
      clock.advance(sends++ < 100 ? 5 : 0.1);
    },
  };
  const r = await runProduce([sender], {
    rate: 100,
    messageSize: 16,
    durationSec: 1,
    warmUpSec: 1,
    maxInFlight: 1000,
    clock,
  });
  t.is(sends, 200);
  t.is(r.warmUpSent, 100);
  t.is(r.sent, 100);
  t.is(r.published, 100);
  t.is(r.publishLatencyMs.count, 100);
  // None of the warm-up's slow receipts is in the measured latencies.
  t.true(r.publishLatencyMs.max < 1, `max ${r.publishLatencyMs.max}`);
  t.true(r.elapsedSec <= 1.1, `elapsed ${r.elapsedSec}`);
});

test('produce driver - a negative warm-up is refused', async (t) => {
  const sender: PerfSender = { send: async () => undefined };
  await t.throwsAsync(
    runProduce([sender], { rate: 0, messageSize: 16, durationSec: 1, warmUpSec: -1, maxInFlight: 1 }),
    { message: /warm-up '-1' must be a number of seconds ≥ 0/ },
  );
});

test('produce driver - with sendWithCallback, receipts and refusals come through the callback', async (t) => {
  const clock = virtualClock();
  let n = 0;
  let viaPromise = 0;
  const sender: PerfSender = {
    send: async () => {
      viaPromise++;
    },
    sendWithCallback: (_payload, _opts, cb) => {
      const fail = n++ % 4 === 0;
      // Receipts arrive 3 ms (virtual) after the send, in a later turn.
      setImmediate(() => {
        clock.advance(3);
        cb(fail ? new Error('quota exceeded') : undefined);
      });
    },
  };
  const r = await runProduce([sender], { rate: 100, messageSize: 16, durationSec: 1, maxInFlight: 1, clock });
  t.is(viaPromise, 0, 'send is not used when sendWithCallback is there');
  t.is(r.sent, 100);
  t.is(r.errors, 25);
  t.is(r.published, 75);
  t.is(r.firstError, 'quota exceeded');
  t.is(r.publishLatencyMs.count, 75);
  t.true(r.publishLatencyMs.p50 >= 3, `p50 ${r.publishLatencyMs.p50}`);
});
