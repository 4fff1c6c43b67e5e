/**
 * Renders a Helm chart without a helm binary: builds the Go harness beside
 * this file (text/template + sprig, offline in GOPATH mode against Debian's
 * Go packages, installed when missing) once per source version, then runs it.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureDebianPackages } from '../apt.js';

const here = new URL('.', import.meta.url).pathname;
const GOCODE = '/usr/share/gocode';

export interface RenderOptions {
  /** Chart directory (holds Chart.yaml). */
  chart: string;
  /** Values files merged over values.yaml, in order. */
  valueFiles?: string[];
  /** `key.path=value` pairs merged last, like `helm template --set`. */
  set?: string[];
  releaseName?: string;
  namespace?: string;
  /** Extra API versions reported by `.Capabilities.APIVersions`. */
  apiVersions?: string[];
  /** Render NOTES.txt instead of the manifests. */
  notes?: boolean;
  /** Render as an upgrade (`.Release.IsUpgrade`). */
  upgrade?: boolean;
}

export type RenderResult = { ok: true; output: string } | { ok: false; error: string };

let binary: string | undefined;

/** Path of the built harness, building it (and installing Go) on first use. */
export function helmRenderBinary(): string {
  if (binary) return binary;
  ensureDebianPackages('/usr/bin/go', ['golang-go']);
  ensureDebianPackages(`${GOCODE}/src/github.com/Masterminds/sprig/functions.go`, [
    'golang-github-masterminds-sprig-dev',
  ]);
  ensureDebianPackages(`${GOCODE}/src/gopkg.in/yaml.v2/yaml.go`, ['golang-gopkg-yaml.v2-dev']);
  const source = readFileSync(join(here, 'main.go'));
  const digest = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const dir = join(tmpdir(), 'sluice-helm-render');
  const out = join(dir, `helm-render-${digest}`);
  if (!existsSync(out)) {
    mkdirSync(dir, { recursive: true });
    const partial = `${out}.${process.pid}.tmp`;
    execFileSync('go', ['build', '-o', partial, 'main.go'], {
      cwd: here,
      stdio: ['ignore', 'inherit', 'inherit'],
      env: {
        ...process.env,
        GO111MODULE: 'off',
        GOPATH: `${join(dir, 'gopath')}:${GOCODE}`,
        GOCACHE: join(dir, 'gocache'),
        GOFLAGS: '',
        CGO_ENABLED: '0',
      },
    });
    // Rename is atomic, so a concurrent build never leaves a half-written binary behind.
    renameSync(partial, out);
  }
  binary = out;
  return out;
}

/** Render a chart; a refusal (schema-independent template failure) comes back as `ok: false` with Helm's message. */
export function renderChart(opts: RenderOptions): RenderResult {
  const args = [
    '-chart',
    opts.chart,
    '-name',
    opts.releaseName ?? 'sluice',
    '-namespace',
    opts.namespace ?? 'default',
    '-strict',
  ];
  for (const f of opts.valueFiles ?? []) args.push('-f', f);
  for (const s of opts.set ?? []) args.push('-set', s);
  for (const a of opts.apiVersions ?? []) args.push('-api-versions', a);
  if (opts.notes) args.push('-notes');
  if (opts.upgrade) args.push('-upgrade');
  const res = spawnSync(helmRenderBinary(), args, { encoding: 'utf8', timeout: 60_000 });
  if (res.error) throw res.error;
  if (res.status !== 0) return { ok: false, error: res.stderr.trim() };
  return { ok: true, output: res.stdout };
}
