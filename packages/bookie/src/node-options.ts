/**
 * V8 flags a bookie process starts with wherever Sluice launches one: the
 * Helm chart's default `bookie.nodeOptions` (a test checks they agree) and
 * the benchmarks. V8 sizes the young generation when the process starts, so
 * the bookie cannot set this itself (`v8.setFlagsFromString` after start-up
 * leaves the semi-spaces as they are).
 *
 * A bookie allocates ~1.35 KB of short-lived objects per 1 KiB add; with
 * V8's default 16 MiB semi-space that is a scavenge about every 100 ms at
 * half its max rate, each stopping adds for about a millisecond. Bookie
 * benchmark, three interleaved pairs: 9–11 scavenges a second → 3 (1 KiB),
 * 4–5 → 2 (16 KiB), p99 at half the max rate 11.11 / 25.06 / 5.16 ms →
 * 5.01 / 5.95 / 5.15 (1 KiB). The young generation may then hold up to
 * ~150 MiB more under load.
 */
export const BOOKIE_NODE_OPTIONS = '--max-semi-space-size=64';

/** Whether a process started with these flags chose its young-generation size itself. */
export function semiSpaceChosen(execArgv: readonly string[], nodeOptions: string | undefined): boolean {
  return (
    execArgv.some((a) => a.startsWith('--max-semi-space-size')) ||
    (nodeOptions ?? '').includes('--max-semi-space-size')
  );
}

/** `NODE_OPTIONS` for a bookie process: `existing` plus `BOOKIE_NODE_OPTIONS`, unless it sets the semi-space itself. */
export function bookieNodeOptions(existing: string | undefined): string {
  if (existing && semiSpaceChosen([], existing)) return existing;
  return existing ? `${existing} ${BOOKIE_NODE_OPTIONS}` : BOOKIE_NODE_OPTIONS;
}
