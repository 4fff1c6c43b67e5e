/**
 * `npm run bench -- <workload.yaml> [--runs 3] [--data-dir DIR] [--duration S] [--warm-up S] [--no-nats] [--no-sluice]
 *   [--disk-seconds 3]`
 *
 * Runs an OpenMessaging-Benchmark-style workload (test/perf/workloads/*.yaml)
 * against real Sluice processes and, in the same run, measures the disk's
 * bound (write + fdatasync per group) and NATS JetStream with the same load
 * driver. Sluice and NATS runs are interleaved (sluice, nats, sluice, ...);
 * the report gives the median of the runs with their range. Results go to
 * test/perf/results/<workload>-<time>.{json,md}. Needs a build
 * (`npx turbo run build`): the servers run from packages/cli/dist.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadWorkload, type Workload } from '../packages/cli/src/perf/index.js';
import { measureDiskBound } from '../test/perf/harness/disk-bound.js';
import { type BenchReport, summarizeReport, toMarkdown } from '../test/perf/harness/report.js';
import { REPO, SLUICE_BIN } from '../test/perf/harness/sluice-topology.js';
import { runNatsTrial, runSluiceTrial, type Side, type TrialResult } from '../test/perf/harness/trial.js';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    runs: { type: 'string', default: '3' },
    'data-dir': { type: 'string' },
    'no-nats': { type: 'boolean', default: false },
    'no-sluice': { type: 'boolean', default: false },
    'disk-seconds': { type: 'string', default: '3' },
    duration: { type: 'string' },
    'warm-up': { type: 'string' },
  },
});

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}

const file = positionals[0];
if (!file)
  fail(
    'usage: npm run bench -- <workload.yaml> [--runs N] [--data-dir DIR] [--duration S] [--warm-up S] [--no-nats] [--no-sluice]',
  );
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) fail(`--runs '${values.runs}' must be a positive integer`);
if (!existsSync(SLUICE_BIN)) fail(`${SLUICE_BIN} is missing; build first: npx turbo run build`);
function readWorkload(path: string): Workload {
  try {
    return loadWorkload(path);
  } catch (err) {
    return fail((err as Error).message);
  }
}
const workload = readWorkload(file);
if (values.duration !== undefined) {
  const d = Number(values.duration);
  if (!(d > 0)) fail(`--duration '${values.duration}' must be a positive number of seconds`);
  workload.durationSec = d;
}
if (values['warm-up'] !== undefined) {
  const d = Number(values['warm-up']);
  if (!(d >= 0)) fail(`--warm-up '${values['warm-up']}' must be a number of seconds ≥ 0`);
  workload.warmUpSec = d;
}
const natsReplicas = values['no-nats'] ? 0 : workload.natsReplicas;
const parent = values['data-dir'] ?? tmpdir();
mkdirSync(parent, { recursive: true });

function diskOf(dir: string): string {
  try {
    const mounts = readFileSync('/proc/mounts', 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split(' '));
    const best = mounts
      .filter(
        ([, mnt]) => mnt !== undefined && (dir === mnt || dir.startsWith(mnt === '/' ? '/' : `${mnt}/`)),
      )
      .sort((a, b) => b[1]!.length - a[1]!.length)[0];
    return best ? `${best[0]} (${best[2]}) at ${best[1]}` : 'unknown';
  } catch {
    return 'unknown';
  }
}

const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);
const report: BenchReport = {
  workload: { ...workload, natsReplicas },
  machine: {
    cpus: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    disk: diskOf(parent),
  },
  startedAt: new Date().toISOString(),
  disk: [],
  trials: [],
  failures: [],
  sides: {},
};

const dirs: string[] = [];
const cleanup = () => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
};
process.once('SIGINT', () => {
  cleanup();
  process.exit(130);
});

log(`disk bound in ${parent} (${report.machine.disk})`);
report.disk = measureDiskBound(
  parent,
  [64 * 1024, 256 * 1024, 1024 * 1024],
  Number(values['disk-seconds']),
  workload.messageSize,
  [1024 * 1024],
);
for (const d of report.disk) {
  log(
    `  ${d.groupBytes / 1024} KiB groups${d.direct ? ' (O_DIRECT)' : ''}: ${d.mbPerSec.toFixed(1)} MB/s, ${Math.round(d.fsyncsPerSec)} fsync/s`,
  );
}

async function trial(side: Side, run: number): Promise<void> {
  const dir = mkdtempSync(join(parent, `sluice-bench-${side}-`));
  dirs.push(dir);
  log(`${side} run ${run}/${runs} (${workload.warmUpSec} s warm-up + ${workload.durationSec} s)`);
  try {
    const w = { ...workload, natsReplicas };
    const result: TrialResult =
      side === 'sluice' ? await runSluiceTrial(w, run, dir) : await runNatsTrial(w, run, dir);
    report.trials.push(result);
    log(
      `  ${side}: ${Math.round(result.msgPerSec)} msg/s, publish p99 ${result.publishLatencyMs.p99} ms, ` +
        `e2e p99 ${result.endToEndLatencyMs?.p99 ?? '–'} ms, ${result.errors} errors, ` +
        `${result.bytesWrittenPerPayloadByte.toFixed(2)} B written / payload B`,
    );
  } catch (err) {
    const error = (err as Error).message;
    report.failures.push({ side, run, error });
    log(`  ${side} run ${run} failed: ${error.slice(0, 2000)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

for (let run = 1; run <= runs; run++) {
  if (!values['no-sluice']) await trial('sluice', run);
  if (natsReplicas > 0) await trial('nats', run);
}
cleanup();
summarizeReport(report);

const resultsDir = join(REPO, 'test', 'perf', 'results');
mkdirSync(resultsDir, { recursive: true });
const stamp = report.startedAt.replace(/[:.]/g, '-');
const base = join(resultsDir, `${workload.name}-${stamp}`);
writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
const md = toMarkdown(report);
writeFileSync(`${base}.md`, md);
process.stdout.write(`${md}\nresults: ${base}.json, ${base}.md\n`);
process.exitCode = report.trials.length > 0 ? 0 : 1;
