import { randomFillSync } from 'node:crypto';
import { InvalidArgumentError } from '@sluice/common';

/** The producer writes its intended send time (epoch ms, float64 BE) into the first 8 bytes. */
export const TIMESTAMP_BYTES = 8;

/**
 * Benchmark payloads of a fixed size: random (incompressible) bytes with the
 * send timestamp in front, so a consumer in another process on the same
 * machine can measure end-to-end latency.
 */
export class PayloadFactory {
  private readonly template: Buffer;
  /** Buffers whose sends were acknowledged, ready for the next send. */
  private readonly free: Buffer[] = [];

  /**
   * `maxFree` bounds the buffers kept for reuse; the driver's in-flight
   * windows bound how many are out at once, so a free list that size never
   * allocates after the first window's worth.
   */
  constructor(
    readonly size: number,
    private readonly maxFree = 0,
  ) {
    if (!Number.isInteger(size) || size < TIMESTAMP_BYTES) {
      throw new InvalidArgumentError(
        `message size '${size}' must be an integer ≥ ${TIMESTAMP_BYTES} bytes (the send timestamp goes in the first ${TIMESTAMP_BYTES})`,
      );
    }
    this.template = randomFillSync(Buffer.allocUnsafe(size));
  }

  /** A fresh buffer per message: the client keeps it until the receipt arrives. */
  make(sendEpochMs: number): Buffer {
    const buf = Buffer.allocUnsafe(this.size);
    this.template.copy(buf);
    buf.writeDoubleBE(sendEpochMs, 0);
    return buf;
  }

  /**
   * A payload for one send, reusing a buffer handed back with `give`. At 100k+
   * msg/s a fresh 1 KiB buffer per message was the perf client's largest
   * allocation and most of its GC; only the timestamp changes between sends.
   */
  take(sendEpochMs: number): Buffer {
    const buf = this.free.pop();
    if (buf === undefined) return this.make(sendEpochMs);
    buf.writeDoubleBE(sendEpochMs, 0);
    return buf;
  }

  /**
   * Hand back a payload whose send was acknowledged: a sender is done with
   * its bytes once the system stored them. (After a failed send the client
   * may still hold the buffer, so do not give those back.)
   */
  give(buf: Buffer): void {
    if (this.free.length < this.maxFree) this.free.push(buf);
  }
}

/** Earliest plausible send time: anything before 2020 is not a timestamp we wrote. */
const EARLIEST_EPOCH_MS = Date.UTC(2020, 0, 1);
/** Clocks of two processes on one machine agree far better than this. */
const CLOCK_SLACK_MS = 60_000;

/** The send timestamp of a benchmark payload, or undefined when the value carries none. */
export function readSendTimestamp(value: Buffer, nowEpochMs: number): number | undefined {
  if (value.length < TIMESTAMP_BYTES) return undefined;
  const ts = value.readDoubleBE(0);
  if (!Number.isFinite(ts) || ts < EARLIEST_EPOCH_MS || ts > nowEpochMs + CLOCK_SLACK_MS) return undefined;
  return ts;
}
