/**
 * Message and byte counts over the whole run and over the current progress
 * interval; warm-up counts (`counted` false) show in the interval only.
 */
export class ThroughputMeter {
  messages = 0;
  bytes = 0;
  private intervalMessages = 0;
  private intervalBytes = 0;
  private intervalStartMs: number;

  constructor(startMs: number) {
    this.intervalStartMs = startMs;
  }

  add(messages: number, bytes: number, counted = true): void {
    if (counted) {
      this.messages += messages;
      this.bytes += bytes;
    }
    this.intervalMessages += messages;
    this.intervalBytes += bytes;
  }

  /** Rates since the previous call, then start a new interval at `nowMs`. */
  takeInterval(nowMs: number): { msgPerSec: number; mbPerSec: number } {
    const sec = Math.max(1e-3, (nowMs - this.intervalStartMs) / 1000);
    const rates = { msgPerSec: this.intervalMessages / sec, mbPerSec: this.intervalBytes / sec / MIB };
    this.intervalMessages = 0;
    this.intervalBytes = 0;
    this.intervalStartMs = nowMs;
    return rates;
  }
}

export const MIB = 1024 * 1024;
