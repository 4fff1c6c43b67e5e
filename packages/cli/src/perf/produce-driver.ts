import { InvalidArgumentError } from '@sluice/common';
import { InFlightWindow } from './in-flight-window.js';
import { LatencyRecorder, type LatencySummary, useWebAssemblyHistograms } from './latency-recorder.js';
import { PayloadFactory } from './payload.js';
import { type PerfClock, systemClock } from './perf-clock.js';
import { RateScheduler } from './rate-scheduler.js';
import { ThroughputMeter } from './throughput-meter.js';

/** What the produce driver needs of a producer (a Sluice producer, a NATS JetStream publisher, ...). */
export interface PerfSender {
  /**
   * Resolves once the system acknowledged the message as stored. The driver
   * reuses `payload` for a later send once this resolves, so a sender must
   * not keep it past that point.
   */
  send(payload: Buffer): Promise<unknown>;
  /** Used instead of `send` when present: `cb(err)` once refused, `cb(undefined)` once stored, never synchronously. */
  sendWithCallback?(payload: Buffer, opts: Record<string, never>, cb: (err: unknown) => void): void;
}

const NO_SEND_OPTIONS: Record<string, never> = {};

export interface ProduceOptions {
  /** Messages per second over all senders; 0 = as fast as the windows allow. */
  rate: number;
  messageSize: number;
  /** Measured seconds, after the warm-up. */
  durationSec: number;
  /**
   * Send for this many seconds first and leave those sends out of the
   * results (as OpenMessaging Benchmark's warm-up does): JIT compilation,
   * the first heap growth and cold caches are not the steady state. The
   * progress lines show them. Default 0.
   */
  warmUpSec?: number;
  /** Sends awaiting their receipt, per sender. */
  maxInFlight: number;
  /** Longest to wait for outstanding receipts after the last send (default 30 s). */
  drainTimeoutMs?: number;
  /** Stops sending early (SIGINT); outstanding receipts are still awaited. */
  signal?: AbortSignal;
  /** Called about once a second. */
  onProgress?: (p: ProduceProgress) => void;
  progressIntervalMs?: number;
  clock?: PerfClock;
}

export interface ProduceProgress {
  elapsedSec: number;
  /** The interval lies (partly) in the warm-up. */
  warmingUp: boolean;
  msgPerSec: number;
  mbPerSec: number;
  publishLatencyMs: LatencySummary;
  inFlight: number;
  errors: number;
}

export interface ProduceResult {
  /** Sends handed to the senders after the warm-up. */
  sent: number;
  /** Sends made during the warm-up (not in any other figure). */
  warmUpSent: number;
  /** Sends acknowledged. */
  published: number;
  errors: number;
  firstError: string | undefined;
  /** Receipts still missing when the drain timed out. */
  unacknowledged: number;
  /** From the first measured intended send (the end of the warm-up) to the last receipt. */
  elapsedSec: number;
  msgPerSec: number;
  mbPerSec: number;
  publishLatencyMs: LatencySummary;
}

export function validateProduceOptions(o: ProduceOptions): void {
  if (!Number.isFinite(o.rate) || o.rate < 0) {
    throw new InvalidArgumentError(
      `rate '${o.rate}' must be messages per second ≥ 0 (0 = as fast as possible)`,
    );
  }
  if (!(o.durationSec > 0))
    throw new InvalidArgumentError(`duration '${o.durationSec}' must be a positive number of seconds`);
  if (o.warmUpSec !== undefined && !(Number.isFinite(o.warmUpSec) && o.warmUpSec >= 0))
    throw new InvalidArgumentError(`warm-up '${o.warmUpSec}' must be a number of seconds ≥ 0`);
  if (!Number.isInteger(o.maxInFlight) || o.maxInFlight < 1) {
    throw new InvalidArgumentError(`max in-flight '${o.maxInFlight}' must be a positive integer`);
  }
}

/**
 * Drive `senders` for `warmUpSec` + `durationSec`, each on its own schedule (rate / senders,
 * staggered so their sends interleave) and its own bounded window. Publish
 * latency runs from the intended send time to the receipt.
 */
export async function runProduce(senders: PerfSender[], opts: ProduceOptions): Promise<ProduceResult> {
  validateProduceOptions(opts);
  if (senders.length === 0) throw new InvalidArgumentError('need at least one producer');
  const clock = opts.clock ?? systemClock;
  const payloads = new PayloadFactory(opts.messageSize, opts.maxInFlight * senders.length);
  await useWebAssemblyHistograms();
  const latency = new LatencyRecorder();
  const start = clock.now();
  const meter = new ThroughputMeter(start);
  // Sends scheduled before `measureFrom` are the warm-up: made, shown in progress lines, not counted.
  const measureFrom = start + (opts.warmUpSec ?? 0) * 1000;
  const endAt = measureFrom + opts.durationSec * 1000;
  const perSenderRate = opts.rate / senders.length;
  let sent = 0;
  let warmUpSent = 0;
  /** Warm-up receipts since the last progress line. */
  let warmUpReceipts = 0;
  let errors = 0;
  let firstError: string | undefined;
  let lastReceipt = measureFrom;
  const windows = senders.map(() => new InFlightWindow(opts.maxInFlight));

  const progressTimer = opts.onProgress
    ? setInterval(() => {
        const now = clock.now();
        opts.onProgress?.({
          elapsedSec: (now - start) / 1000,
          warmingUp: warmUpReceipts > 0 || now < measureFrom,
          ...meter.takeInterval(now),
          publishLatencyMs: latency.takeInterval(),
          inFlight: windows.reduce((n, w) => n + w.count, 0),
          errors,
        });
        warmUpReceipts = 0;
      }, opts.progressIntervalMs ?? 1000)
    : undefined;

  const stopped = () => opts.signal?.aborted === true;

  const drive = async (sender: PerfSender, window: InFlightWindow, index: number): Promise<void> => {
    const staggerMs = perSenderRate > 0 ? (index * 1000) / opts.rate : 0;
    const schedule = new RateScheduler(perSenderRate, start + staggerMs);
    const receipt = (intended: number, payload: Buffer): void => {
      const now = clock.now();
      payloads.give(payload);
      if (intended >= measureFrom) {
        latency.record(now - intended);
        meter.add(1, opts.messageSize);
        lastReceipt = now;
      } else {
        latency.recordWarmUp(now - intended);
        meter.add(1, opts.messageSize, false);
        warmUpReceipts++;
      }
      window.release();
    };
    const onFailure = (err: unknown) => {
      errors++;
      firstError ??= err instanceof Error ? err.message : String(err);
      window.release();
    };
    for (;;) {
      if (stopped()) return;
      const now = clock.now();
      // The end is by intended time, not the clock: sends due before it that are late because
      // the window was full are still made and measured (no coordinated omission at the end).
      if (schedule.peek(now) >= endAt) return;
      const wait = schedule.msUntilNext(now);
      if (wait > 0) {
        await clock.sleep(Math.min(wait, endAt - now));
        continue;
      }
      // The intended time is fixed before waiting for window room, so time spent blocked counts as latency.
      const intended = schedule.take(now);
      const room = window.acquire();
      if (room) await room;
      if (intended >= measureFrom) sent++;
      else warmUpSent++;
      const payload = payloads.take(clock.epochMs(intended));
      if (sender.sendWithCallback) {
        sender.sendWithCallback(payload, NO_SEND_OPTIONS, (err) => {
          if (err) onFailure(err);
          else receipt(intended, payload);
        });
      } else {
        sender.send(payload).then(() => receipt(intended, payload), onFailure);
      }
    }
  };

  try {
    await Promise.all(senders.map((s, i) => drive(s, windows[i]!, i)));
    const timeout = new AbortController();
    await Promise.race([
      Promise.all(windows.map((w) => w.drain())).finally(() => timeout.abort()),
      clock.sleep(opts.drainTimeoutMs ?? 30_000, timeout.signal),
    ]);
  } finally {
    if (progressTimer) clearInterval(progressTimer);
  }
  const unacknowledged = windows.reduce((n, w) => n + w.count, 0);
  const elapsedSec = Math.max(1e-3, (lastReceipt - measureFrom) / 1000);
  return {
    sent,
    warmUpSent,
    published: meter.messages,
    errors,
    firstError,
    unacknowledged,
    elapsedSec,
    msgPerSec: meter.messages / elapsedSec,
    mbPerSec: meter.bytes / elapsedSec / (1024 * 1024),
    publishLatencyMs: latency.summary(),
  };
}
