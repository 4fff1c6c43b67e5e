/**
 * Real pieces for managed-log integration tests: bookie processes
 * (`sluice bookie` from packages/cli/dist), an etcd metadata URL with a
 * unique prefix, an s3rver offload URL, and a worker process that runs the
 * managed log from dist/ (so a test can kill -9 it).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { openMetadataStore } from '@sluice/metadata';
import { freePort, waitFor } from './ports.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const CLI = join(ROOT, 'packages/cli/dist/bin.js');
const WORKER = join(ROOT, 'test/support/managed-log-worker.ts');

export function requireServices(): { etcd: string; s3: string; bucket: string } {
  const etcd = process.env.SLUICE_TEST_ETCD;
  const s3 = process.env.SLUICE_TEST_S3;
  const bucket = process.env.SLUICE_TEST_S3_BUCKET ?? 'sluice-test';
  if (!etcd || !s3) {
    throw new Error('SLUICE_TEST_ETCD / SLUICE_TEST_S3 are not set; run through scripts/with-services.ts');
  }
  return { etcd, s3, bucket };
}

export function uniqueMetadataUrl(): string {
  return `etcd://${requireServices().etcd}/test-ml-${randomUUID().slice(0, 8)}`;
}

export function s3OffloadUrl(): string {
  const { s3, bucket } = requireServices();
  return `s3://${bucket}/ml-${randomUUID().slice(0, 8)}?endpoint=${encodeURIComponent(s3)}&region=us-east-1`;
}

/** s3rver accepts any credentials; the SDK chain needs some. */
export const S3_ENV = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };

export interface BookieProcess {
  id: number;
  port: number;
  proc: ChildProcess;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export class BookieCluster {
  private constructor(
    readonly metadataUrl: string,
    readonly bookies: BookieProcess[],
    private readonly dir: string,
  ) {}

  static async start(metadataUrl: string, count: number): Promise<BookieCluster> {
    if (!existsSync(CLI)) {
      throw new Error(`${CLI} is missing; run npx turbo run build first`);
    }
    const dir = mkdtempSync(join(tmpdir(), 'ml-bookies-'));
    const bookies: BookieProcess[] = [];
    const cluster = new BookieCluster(metadataUrl, bookies, dir);
    try {
      for (let i = 0; i < count; i++) {
        const port = await freePort();
        const proc = spawn(
          process.execPath,
          [
            CLI,
            'bookie',
            '--metadata',
            metadataUrl,
            '--data-dir',
            join(dir, `b${i}`),
            '--port',
            String(port),
            '--http-port',
            '-1',
            '--add-port',
            String(await freePort()),
            '--bind-host',
            '127.0.0.1',
            '--advertise-address',
            `127.0.0.1:${port}`,
          ],
          {
            stdio: ['ignore', 'ignore', 'pipe'],
            env: {
              ...process.env,
              SLUICE_BOOKIE_GC_INTERVAL_MS: '1000',
              SLUICE_BOOKIE_GC_GRACE_PERIOD_MS: '1000',
              SLUICE_BOOKIE_SESSION_TTL_MS: '3000',
            },
          },
        );
        let stderr = '';
        proc.stderr?.on('data', (d: Buffer) => {
          stderr = (stderr + d.toString()).slice(-4000);
        });
        proc.on('exit', (code) => {
          if (code && code !== 0) process.stderr.write(`bookie ${i} exited ${code}: ${stderr}\n`);
        });
        bookies.push({
          id: i,
          port,
          proc,
          kill: (signal = 'SIGKILL') => killAndWait(proc, signal),
        });
      }
      const store = await openMetadataStore(metadataUrl);
      try {
        await waitFor(
          async () => (await store.listAll('bookies/available/', { keysOnly: true })).length >= count,
          30_000,
          `${count} bookies registered`,
        );
      } finally {
        await store.close();
      }
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  async stop(): Promise<void> {
    await Promise.all(this.bookies.map((b) => b.kill('SIGKILL')));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function killAndWait(proc: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    proc.once('exit', () => resolve());
    proc.kill(signal);
  });
}

/** Deterministic payload of entry i: 64..1000 bytes derived from sha256(i). */
export function payloadOf(i: number): Buffer {
  const size = 64 + ((i * 7919) % 937);
  const seed = createHash('sha256').update(`entry-${i}`).digest();
  const out = Buffer.alloc(size);
  for (let o = 0; o < size; o += seed.length) seed.copy(out, o);
  out.writeUInt32BE(i, 0);
  return out;
}

/** The i-th of a deterministic sequence of distinct indexes in [1, span). */
export function scatteredIndexes(count: number, span: number): Set<number> {
  const out = new Set<number>();
  let seed = 12345;
  while (out.size < count) {
    seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
    out.add(1 + (seed % (span - 1)));
  }
  return out;
}

export interface WorkerEvent {
  event: string;
  [k: string]: unknown;
}

/** A managed-log worker process; events are JSON lines on its stdout. */
export class Worker {
  readonly events: WorkerEvent[] = [];
  private readonly exited: Promise<number | null>;
  private stderr = '';

  constructor(
    readonly proc: ChildProcess,
    private readonly listeners: ((e: WorkerEvent) => void)[] = [],
  ) {
    const rl = createInterface({ input: proc.stdout! });
    rl.on('line', (line) => {
      try {
        const e = JSON.parse(line) as WorkerEvent;
        this.events.push(e);
        for (const l of this.listeners) l(e);
      } catch {
        // A stray log line, not an event.
      }
    });
    proc.stderr?.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-8000);
    });
    this.exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
  }

  static start(command: string, args: Record<string, unknown>): Worker {
    const proc = spawn(process.execPath, ['--import=tsx', WORKER, command, JSON.stringify(args)], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...S3_ENV },
    });
    return new Worker(proc);
  }

  /** Resolves with the first event named `name`. */
  waitEvent(name: string, timeoutMs = 120_000): Promise<WorkerEvent> {
    const found = this.events.find((e) => e.event === name);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`worker did not report '${name}' in ${timeoutMs} ms; stderr: ${this.stderr}`)),
        timeoutMs,
      );
      const l = (e: WorkerEvent) => {
        if (e.event === 'error') {
          clearTimeout(timer);
          reject(new Error(`worker failed: ${String(e.message)}`));
        } else if (e.event === name) {
          clearTimeout(timer);
          resolve(e);
        }
      };
      this.listeners.push(l);
      this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`worker exited (${code}) before '${name}'; stderr: ${this.stderr}`));
      });
    });
  }

  /** Wait for a clean exit; returns the events. */
  async done(timeoutMs = 180_000): Promise<WorkerEvent[]> {
    const code = await Promise.race([
      this.exited,
      new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), timeoutMs).unref()),
    ]);
    if (code !== 0) {
      await this.kill();
      throw new Error(
        `worker ended with ${code}; events ${JSON.stringify(this.events.slice(-3))}; stderr: ${this.stderr}`,
      );
    }
    return this.events;
  }

  kill(): Promise<void> {
    return killAndWait(this.proc, 'SIGKILL');
  }
}
