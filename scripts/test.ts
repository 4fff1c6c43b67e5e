/**
 * `npm test`: lint, proto lint, typecheck, build, then unit and integration
 * tests against one real etcd and one s3rver started here on free loopback
 * ports (always stopped, also on failure or interrupt). Prints a last line
 * `N passed, N failed` computed from the real results and writes it to
 * .test-results.json for .ci/run.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { EtcdServer } from '../test/support/etcd.js';
import { S3Server } from '../test/support/s3.js';

const root = new URL('..', import.meta.url).pathname;
let passed = 0;
let failed = 0;
const failures: string[] = [];
const cleanups: (() => Promise<void>)[] = [];

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, onLine?: (l: string) => void) {
  return new Promise<number>((resolve) => {
    const child = spawn(cmd, args, {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ['ignore', onLine ? 'pipe' : 'inherit', 'inherit'],
    });
    if (onLine && child.stdout) {
      let buf = '';
      child.stdout.on('data', (d: Buffer) => {
        process.stdout.write(d);
        buf += d.toString();
        const lines = buf.split('\n');
        buf = lines.pop() ?? '';
        lines.forEach(onLine);
      });
      child.stdout.on('end', () => buf && onLine(buf));
    }
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

async function step(name: string, cmd: string, args: string[]) {
  process.stdout.write(`\n== ${name}\n`);
  const started = Date.now();
  const code = await run(cmd, args);
  process.stdout.write(`(${name}: ${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
  if (code === 0) passed++;
  else {
    failed++;
    failures.push(name);
  }
}

async function ava(name: string, config: string, env: NodeJS.ProcessEnv) {
  process.stdout.write(`\n== ${name}\n`);
  let ok = 0;
  let notOk = 0;
  const started = Date.now();
  const code = await run('npx', ['ava', '--config', config, '--tap'], env, (line) => {
    if (/^ok \d+/.test(line) && !/# SKIP|# TODO/.test(line)) ok++;
    else if (/^not ok \d+/.test(line)) {
      notOk++;
      failures.push(line);
    }
  });
  if (code !== 0 && notOk === 0) {
    notOk = 1;
    failures.push(`${name}: ava exited with ${code}`);
  }
  passed += ok;
  failed += notOk;
  process.stdout.write(
    `(${name}: ${ok} passed, ${notOk} failed in ${((Date.now() - started) / 1000).toFixed(1)} s)\n`,
  );
}

function finish(): never {
  const summary = `${passed} passed, ${failed} failed`;
  writeFileSync(`${root}/.test-results.json`, JSON.stringify({ passed, failed, failures }));
  if (failures.length) process.stdout.write(`\nFailures:\n${failures.map((f) => `  ${f}`).join('\n')}\n`);
  process.stdout.write(`\n${summary}\n`);
  process.exit(failed > 0 ? 1 : 0);
}

async function cleanup() {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    failed++;
    failures.push(`interrupted by ${sig}`);
    void cleanup().then(finish);
  });
}

const only = process.argv[2]; // `npm test -- unit` or `-- integration` runs one suite
try {
  if (!only) {
    await step('lint (biome)', 'npx', ['biome', 'check', '.']);
    await step('lint (buf)', 'npx', ['buf', 'lint']);
    await step('typecheck', 'npx', ['tsc', '-p', 'tsconfig.json', '--noEmit']);
  }
  await step('build', 'npx', ['turbo', 'run', 'build', '--output-logs=errors-only']);
  process.stdout.write('\n== starting etcd and s3rver\n');
  const etcd = await EtcdServer.start();
  cleanups.push(() => etcd.destroy());
  const s3 = await S3Server.start(['sluice-test']);
  cleanups.push(() => s3.stop());
  const env = {
    SLUICE_TEST_ETCD: etcd.endpoint,
    SLUICE_TEST_S3: s3.endpoint,
    SLUICE_TEST_S3_BUCKET: 'sluice-test',
    SLUICE_LOG_LEVEL: process.env.SLUICE_LOG_LEVEL ?? 'silent',
    // Sluice supports Node 20 deliberately; the AWS SDK's notice about it is noise in test logs.
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  };
  if (!only || only === 'unit') await ava('unit tests', 'ava.unit.config.js', env);
  if (!only || only === 'integration') await ava('integration tests', 'ava.integration.config.js', env);
} catch (err) {
  failed++;
  failures.push(`test harness: ${(err as Error).message}`);
} finally {
  await cleanup();
}
finish();
