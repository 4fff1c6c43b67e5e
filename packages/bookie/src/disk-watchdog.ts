import { statfs } from 'node:fs/promises';
import type { Logger } from '@sluice/common';
import type { BookieMetrics } from './metrics.js';

export interface DiskUsage {
  dir: string;
  usedFraction: number;
  freeBytes: number;
  totalBytes: number;
}

export async function diskUsage(dir: string): Promise<DiskUsage> {
  const s = await statfs(dir);
  const totalBytes = s.blocks * s.bsize;
  // bavail, not bfree: blocks reserved for root are not ours to fill.
  const freeBytes = s.bavail * s.bsize;
  const usedFraction = totalBytes === 0 ? 0 : 1 - s.bavail / s.blocks;
  return { dir, usedFraction, freeBytes, totalBytes };
}

export interface DiskWatchdogOptions {
  dirs: string[];
  threshold: number;
  lwmThreshold: number;
  intervalMs: number;
  logger: Logger;
  metrics: BookieMetrics;
  /** Called with a reason when a disk crosses the threshold, with undefined once all are below the lower one. */
  onChange: (reason: string | undefined) => void;
  /**
   * Called while any disk is at or over `lwmThreshold`, before the
   * thresholds are applied: give back space kept for reuse (spare files);
   * resolves to how many files it deleted (the usage is then measured again).
   */
  releaseSpace?: () => Promise<number>;
  /** Called after every successful check (capacity refresh of the registration). */
  onChecked?: () => void;
}

/**
 * Turns the bookie read-only when any of its disks fills past `threshold`
 * and writable again once all are back below `lwmThreshold` (the gap keeps
 * it from flapping at the boundary).
 */
export class DiskWatchdog {
  private timer: NodeJS.Timeout | undefined;
  private full = false;
  private stopped = false;
  last: DiskUsage[] = [];

  constructor(private readonly opts: DiskWatchdogOptions) {}

  async start(): Promise<void> {
    await this.check();
    this.arm();
  }

  private arm(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.check()
        .catch((err) => this.opts.logger.warn({ err }, 'disk usage check failed'))
        .finally(() => this.arm());
    }, this.opts.intervalMs);
  }

  async check(): Promise<void> {
    let usages = await Promise.all(this.opts.dirs.map(diskUsage));
    const fullest = (us: DiskUsage[]) => us.reduce((a, b) => (b.usedFraction > a.usedFraction ? b : a));
    if (this.opts.releaseSpace && fullest(usages).usedFraction >= this.opts.lwmThreshold) {
      const released = await this.opts.releaseSpace();
      if (released > 0) {
        this.opts.logger.info({ released }, 'disk usage over the lower threshold: spare files deleted');
        usages = await Promise.all(this.opts.dirs.map(diskUsage));
      }
    }
    this.last = usages;
    for (const u of usages) this.opts.metrics.diskUsage.set({ dir: u.dir }, u.usedFraction);
    const worst = fullest(usages);
    const pct = (f: number) => `${(f * 100).toFixed(1)}%`;
    if (!this.full && worst.usedFraction >= this.opts.threshold) {
      this.full = true;
      const reason = `disk ${worst.dir} is ${pct(worst.usedFraction)} full, over the ${pct(this.opts.threshold)} threshold; bookie is read-only until usage drops below ${pct(this.opts.lwmThreshold)}`;
      this.opts.logger.warn({ usage: worst }, reason);
      this.opts.onChange(reason);
    } else if (this.full && worst.usedFraction < this.opts.lwmThreshold) {
      this.full = false;
      this.opts.logger.info(
        { usage: worst },
        'disk usage back below the lower threshold; bookie is writable',
      );
      this.opts.onChange(undefined);
    }
    this.opts.onChecked?.();
  }

  /** Free bytes of the ledger disk (the last dir) as of the last check. */
  get freeBytes(): number {
    return this.last.at(-1)?.freeBytes ?? 0;
  }

  get totalBytes(): number {
    return this.last.at(-1)?.totalBytes ?? 0;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
