/**
 * The container image the chart runs. No Docker engine is available here, so
 * this checks the Dockerfile's structure against what the chart and the
 * packages rely on (entrypoint, non-root uid, the proto files at /app/proto)
 * instead of building it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, posix, relative } from 'node:path';
import { PROTO_DIR } from '@sluice/proto';
import test from 'ava';
import { parse } from 'yaml';

const root = new URL('../..', import.meta.url).pathname;
const dockerfile = readFileSync(join(root, 'deploy/docker/Dockerfile'), 'utf8');
const dockerignore = readFileSync(join(root, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name?: string;
  steps: Instruction[];
}

/** Instructions with continuation lines joined and comments dropped; ARG defaults before the first FROM applied. */
function parseDockerfile(text: string): Stage[] {
  const lines = text.split('\n').filter((l) => !/^\s*#/.test(l));
  const joined = lines.join('\n').replace(/\\\n/g, ' ');
  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  for (const raw of joined.split('\n')) {
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(raw);
    if (!m) continue;
    const op = m[1]!.toUpperCase();
    const args = m[2]!.trim();
    if (op === 'ARG' && stages.length === 0) {
      const [k, v] = args.split('=');
      globalArgs.set(k!, v ?? '');
      continue;
    }
    if (op === 'FROM') {
      const fm = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args)!;
      const from = fm[1]!.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => globalArgs.get(a ?? b) ?? '');
      stages.push({ from, name: fm[2], steps: [] });
      continue;
    }
    stages.at(-1)?.steps.push({ op, args });
  }
  return stages;
}

const stages = parseDockerfile(dockerfile);
const build = stages[0]!;
const runtime = stages.at(-1)!;
const runs = (s: Stage) => s.steps.filter((i) => i.op === 'RUN').map((i) => i.args);
const last = (s: Stage, op: string) => s.steps.filter((i) => i.op === op).at(-1)?.args;

test('helm image - multi-stage build on the Node 20 slim base', (t) => {
  t.true(stages.length >= 2);
  for (const s of stages) t.is(s.from, 'node:20-bookworm-slim');
  t.truthy(build.name);
  t.true(runtime.steps.some((i) => i.op === 'COPY' && i.args.includes(`--from=${build.name}`)));
});

test('helm image - the build stage installs from the lockfile, builds, and drops dev dependencies', (t) => {
  const commands = runs(build);
  const ci = commands.findIndex((c) => /\bnpm ci\b/.test(c));
  const compile = commands.findIndex((c) => /turbo run build|npm run build/.test(c));
  const prune = commands.findIndex((c) => /npm prune\b.*--omit=dev/.test(c));
  t.true(ci >= 0 && compile > ci && prune > compile, commands.join('\n'));
  t.true(build.steps.some((i) => i.op === 'COPY' && /\bpackage-lock\.json\b/.test(i.args)));
  // Nothing in the runtime stage installs or compiles.
  t.false(runs(runtime).some((c) => /\bnpm (ci|install|i)\b|\btsc\b|turbo/.test(c)));
});

test('helm image - runs as the non-root uid the chart expects', (t) => {
  const user = last(runtime, 'USER');
  t.truthy(user);
  const uid = user!.split(':')[0]!;
  t.regex(uid, /^\d+$/, 'numeric, so runAsNonRoot can verify it');
  t.not(uid, '0');
  t.true(runs(runtime).some((c) => c.includes(`--uid ${uid}`)));
  const values = parse(readFileSync(join(root, 'deploy/helm/sluice/values.yaml'), 'utf8'));
  t.is(String(values.podSecurityContext.runAsUser), uid);
  t.is(values.podSecurityContext.runAsNonRoot, true);
});

test('helm image - entrypoint is the sluice CLI, standalone by default', (t) => {
  t.deepEqual(JSON.parse(last(runtime, 'ENTRYPOINT')!), ['node', '/app/packages/cli/bin/sluice.js']);
  t.deepEqual(JSON.parse(last(runtime, 'CMD')!), ['standalone']);
  const cli = JSON.parse(readFileSync(join(root, 'packages/cli/package.json'), 'utf8'));
  t.is(posix.join('/app/packages/cli', cli.bin.sluice), '/app/packages/cli/bin/sluice.js');
  const exposed = (last(runtime, 'EXPOSE') ?? '').split(/\s+/);
  for (const port of ['6650', '8080', '3181', '8000']) t.true(exposed.includes(port), port);
});

test('helm image - the runtime carries proto/ where @sluice/proto loads it from', (t) => {
  t.is(last(runtime, 'WORKDIR'), '/app');
  // @sluice/proto resolves the contract three levels above its own module, i.e. <root>/proto.
  t.is(relative(root, PROTO_DIR), 'proto');
  const copies = runtime.steps
    .filter((i) => i.op === 'COPY')
    .map((i) => i.args.split(/\s+/).filter((a) => !a.startsWith('--')));
  const dest = (src: string) => copies.find((c) => c[0] === src)?.at(-1);
  t.is(posix.resolve('/app', dest('/app/proto')!), '/app/proto');
  t.is(posix.resolve('/app', dest('/app/packages')!), '/app/packages');
  t.is(posix.resolve('/app', dest('/app/node_modules')!), '/app/node_modules');
});

test('helm image - every file the build copies exists and is not excluded by .dockerignore', (t) => {
  for (const pattern of ['**/node_modules', '**/dist', '.git'])
    t.true(dockerignore.includes(pattern), pattern);
  const sources = build.steps
    .filter((i) => i.op === 'COPY' && !i.args.includes('--from'))
    .flatMap((i) =>
      i.args
        .split(/\s+/)
        .filter((a) => !a.startsWith('--'))
        .slice(0, -1),
    );
  t.true(sources.length > 0);
  for (const src of sources) {
    const path = src.replace(/\/$/, '');
    t.true(existsSync(join(root, path)), `${src} exists`);
    t.false(dockerignore.includes(path), `${src} is not ignored`);
  }
});
