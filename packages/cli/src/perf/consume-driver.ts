import { InvalidArgumentError } from '@sluice/common';
import { LatencyRecorder, type LatencySummary, useWebAssemblyHistograms } from './latency-recorder.js';
import { readSendTimestamp } from './payload.js';
import { type PerfClock, systemClock } from './perf-clock.js';
import { ThroughputMeter } from './throughput-meter.js';

/** What the consume driver needs of a consumer. */
export interface PerfReceiver<M> {
  /** The next message, or undefined after `timeoutMs` without one. */
  receive(timeoutMs: number): Promise<M | undefined>;
  /** Up to `max` messages, waiting up to `timeoutMs` for the first; used instead of `receive` when present. */
  receiveBatch?(max: number, timeoutMs: number): Promise<M[]>;
  valueOf(msg: M): Buffer;
  ack(msg: M): void;
}

export interface ConsumeOptions {
  /** Stop after this long (default: until idle, the signal, or the receiver closes). */
  durationSec?: number;
  /** Stop once this long passes without a message, after the first one arrived. */
  idleTimeoutSec?: number;
  /**
   * Leave out of the results the messages sent in the first this many
   * seconds, counted from the send time of the first message received: with
   * `perf produce --warm-up` of the same length both sides measure the same
   * messages. Default 0.
   */
  warmUpSec?: number;
  signal?: AbortSignal;
  onProgress?: (p: ConsumeProgress) => void;
  progressIntervalMs?: number;
  clock?: PerfClock;
}

export interface ConsumeProgress {
  elapsedSec: number;
  /** The interval held warm-up messages. */
  warmingUp: boolean;
  msgPerSec: number;
  mbPerSec: number;
  endToEndLatencyMs: LatencySummary;
}

export interface ConsumeResult {
  /** Messages received after the warm-up. */
  received: number;
  /** Messages of the warm-up (not in any other figure). */
  warmUpReceived: number;
  /** Messages without a readable send timestamp (not written by `sluice perf produce`). */
  untimed: number;
  bytes: number;
  /** From the first to the last message received after the warm-up. */
  elapsedSec: number;
  msgPerSec: number;
  mbPerSec: number;
  /** Average size of the messages received. */
  messageSize: number;
  endToEndLatencyMs: LatencySummary;
}

/** Longest a single receive waits, so the signal and the deadline are noticed promptly. */
const POLL_MS = 250;
/** Most messages taken from the client's queue per receive call. */
const BATCH_MAX = 1000;

/**
 * Receive and acknowledge until the duration, the idle timeout or the signal
 * ends the run. End-to-end latency runs from the send time the producer wrote
 * into the payload (its intended send time, on the shared wall clock) to
 * delivery here.
 */
export async function runConsume<M>(receiver: PerfReceiver<M>, opts: ConsumeOptions): Promise<ConsumeResult> {
  if (opts.durationSec !== undefined && !(opts.durationSec > 0)) {
    throw new InvalidArgumentError(`duration '${opts.durationSec}' must be a positive number of seconds`);
  }
  if (opts.idleTimeoutSec !== undefined && !(opts.idleTimeoutSec > 0)) {
    throw new InvalidArgumentError(
      `idle timeout '${opts.idleTimeoutSec}' must be a positive number of seconds`,
    );
  }
  if (opts.warmUpSec !== undefined && !(Number.isFinite(opts.warmUpSec) && opts.warmUpSec >= 0)) {
    throw new InvalidArgumentError(`warm-up '${opts.warmUpSec}' must be a number of seconds ≥ 0`);
  }
  const warmUpMs = (opts.warmUpSec ?? 0) * 1000;
  const clock = opts.clock ?? systemClock;
  await useWebAssemblyHistograms();
  const latency = new LatencyRecorder();
  const start = clock.now();
  const meter = new ThroughputMeter(start);
  const endAt = opts.durationSec !== undefined ? start + opts.durationSec * 1000 : Number.POSITIVE_INFINITY;
  const idleMs = opts.idleTimeoutSec !== undefined ? opts.idleTimeoutSec * 1000 : Number.POSITIVE_INFINITY;
  /** Arrival of the latest message, and of the first one after the warm-up. */
  let lastArrival: number | undefined;
  let firstMeasured: number | undefined;
  let last = start;
  let untimed = 0;
  /** The warm-up ends with the messages sent (or, untimed, received) this long after the first. */
  let firstSentAt: number | undefined;
  let warmUpReceived = 0;
  let warmUpSinceProgress = 0;

  const progressTimer = opts.onProgress
    ? setInterval(() => {
        const now = clock.now();
        opts.onProgress?.({
          elapsedSec: (now - start) / 1000,
          warmingUp: warmUpSinceProgress > 0,
          ...meter.takeInterval(now),
          endToEndLatencyMs: latency.takeInterval(),
        });
        warmUpSinceProgress = 0;
      }, opts.progressIntervalMs ?? 1000)
    : undefined;

  const take = (msg: M, at: number, atEpoch: number): void => {
    const value = receiver.valueOf(msg);
    const sentAt = readSendTimestamp(value, atEpoch);
    lastArrival = at;
    // Untimed messages place themselves in the warm-up by their arrival.
    const placedAt = sentAt ?? atEpoch;
    firstSentAt ??= placedAt;
    const warmUp = warmUpMs > 0 && firstMeasured === undefined && placedAt < firstSentAt + warmUpMs;
    if (warmUp) {
      if (sentAt !== undefined) latency.recordWarmUp(atEpoch - sentAt);
      meter.add(1, value.length, false);
      warmUpReceived++;
      warmUpSinceProgress++;
    } else {
      if (sentAt === undefined) untimed++;
      else latency.record(atEpoch - sentAt);
      meter.add(1, value.length);
      firstMeasured ??= at;
      last = at;
    }
    receiver.ack(msg);
  };

  try {
    while (opts.signal?.aborted !== true) {
      const now = clock.now();
      const idleDeadline = lastArrival === undefined ? Number.POSITIVE_INFINITY : lastArrival + idleMs;
      const deadline = Math.min(endAt, idleDeadline);
      if (now >= deadline) break;
      const timeoutMs = Math.max(1, Math.min(POLL_MS, deadline - now));
      if (receiver.receiveBatch) {
        const batch = await receiver.receiveBatch(BATCH_MAX, timeoutMs);
        if (batch.length === 0) continue;
        const at = clock.now();
        const atEpoch = clock.epochMs(at);
        for (const msg of batch) take(msg, at, atEpoch);
      } else {
        const msg = await receiver.receive(timeoutMs);
        if (msg === undefined) continue;
        const at = clock.now();
        take(msg, at, clock.epochMs(at));
      }
    }
  } finally {
    if (progressTimer) clearInterval(progressTimer);
  }
  const elapsedSec = firstMeasured === undefined ? 0 : Math.max(1e-3, (last - firstMeasured) / 1000);
  return {
    received: meter.messages,
    warmUpReceived,
    untimed,
    bytes: meter.bytes,
    elapsedSec,
    msgPerSec: elapsedSec > 0 ? meter.messages / elapsedSec : 0,
    mbPerSec: elapsedSec > 0 ? meter.bytes / elapsedSec / (1024 * 1024) : 0,
    messageSize: meter.messages > 0 ? Math.round(meter.bytes / meter.messages) : 0,
    endToEndLatencyMs: latency.summary(),
  };
}
