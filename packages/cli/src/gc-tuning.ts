import { setFlagsFromString } from 'node:v8';

/** Default of V8's `--heap-growing-percent` for Sluice processes. */
export const DEFAULT_HEAP_GROWING_PERCENT = 200;

/**
 * Let the old generation grow to 3× its live size between full collections
 * (V8's `--heap-growing-percent=200`) unless the command line sets it;
 * `SLUICE_HEAP_GROWING_PERCENT` chooses another value (0 keeps V8's own
 * heuristic).
 *
 * A Sluice process keeps a small live heap (tens of MiB) and allocates fast:
 * every message passes through short-lived buffers and records. For a heap
 * that small V8 picks a growing factor near its minimum, so the old
 * generation's limit sits a few MiB above the live size and a mark-compact
 * runs every few hundred milliseconds, each stopping the event loop for
 * 3–12 ms. A standalone at 5,000 msg/s ran ~3 full collections a second and
 * its publish p99 was 25–28 ms; with this setting it runs one every ~4 s.
 * V8 reads the flag at every full collection, so setting it at start-up takes
 * effect; the heap limit (`--max-old-space-size`) still bounds the growth.
 *
 * Returns the value set, undefined when left to V8 or the command line.
 */
export function tuneGarbageCollector(env: NodeJS.ProcessEnv = process.env): number | undefined {
  if (process.execArgv.some((a) => a.startsWith('--heap-growing-percent'))) return undefined;
  const raw = env.SLUICE_HEAP_GROWING_PERCENT;
  const percent = raw === undefined || raw === '' ? DEFAULT_HEAP_GROWING_PERCENT : Number(raw);
  if (!Number.isSafeInteger(percent) || percent < 0 || percent > 10_000) {
    throw new Error(`SLUICE_HEAP_GROWING_PERCENT must be an integer from 0 to 10000, got '${raw}'`);
  }
  if (percent === 0) return undefined;
  setFlagsFromString(`--heap-growing-percent=${percent}`);
  return percent;
}

/**
 * Turn off V8's allocation-site pretenuring (`--no-allocation-site-pretenuring`)
 * unless the command line sets it or `SLUICE_ALLOCATION_SITE_PRETENURING=true`.
 *
 * V8 watches how many objects of each allocation site survive a young
 * collection; past ~85% it allocates that site's objects straight in the old
 * generation from then on. A burst (a consumer's queue filling while the
 * application is busy, a producer's window at its limit) makes a hot site of
 * per-message objects look long-lived, and V8 keeps the decision after the
 * burst: every later message object then lands in the old generation, dies
 * there, and is collected only by full collections. A cluster bench's
 * consumer went either way from one run to the next: 16–19% of a core with
 * no full collection, or 33–37% with 3–4 full collections a second.
 * (`--trace-pretenuring-statistics` showed the decisions: 14 sites tenured in a
 * 12 s consumer run.) Sluice's hot paths allocate short-lived objects
 * only; what lives long is in Buffers and typed arrays, which this does not
 * touch.
 *
 * Returns whether it was turned off.
 */
export function stopPretenuring(env: NodeJS.ProcessEnv = process.env): boolean {
  if (process.execArgv.some((a) => a.includes('allocation-site-pretenuring'))) return false;
  const raw = env.SLUICE_ALLOCATION_SITE_PRETENURING;
  if (raw === 'true') return false;
  if (raw !== undefined && raw !== '' && raw !== 'false') {
    throw new Error(`SLUICE_ALLOCATION_SITE_PRETENURING must be true or false, got '${raw}'`);
  }
  setFlagsFromString('--no-allocation-site-pretenuring');
  return true;
}
