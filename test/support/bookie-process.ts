import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { credentials, type ServiceClientConstructor } from '@grpc/grpc-js';
import { crc32c } from '@sluice/common';
import {
  type AddEntriesResponse__Output,
  type AddResult__Output,
  type BookieServiceClient,
  loadProto,
  MAX_GRPC_MESSAGE_BYTES,
  type ReadEntryResponse__Output,
} from '@sluice/proto';
import { bookieNodeOptions } from '../../packages/bookie/src/node-options.js';
import { freePort, waitFor } from './ports.js';

const REPO = join(import.meta.dirname, '..', '..');
export const SLUICE_BIN = join(REPO, 'packages', 'cli', 'dist', 'bin.js');

/** A metadata URL with a fresh prefix on the shared test etcd. */
export function testMetadataUrl(area: string): string {
  const etcd = process.env.SLUICE_TEST_ETCD;
  if (!etcd) throw new Error('SLUICE_TEST_ETCD is not set; run through scripts/with-services.ts');
  return `etcd://${etcd}/test-${area}-${randomUUID().slice(0, 8)}`;
}

export interface BookieProcessOptions {
  metadata: string;
  dataDir: string;
  port?: number;
  httpPort?: number;
  /** Add channel port (default: a free one picked by the bookie; give one to keep it across restarts). */
  addPort?: number;
  /** Extra settings as SLUICE_BOOKIE_* env vars (e.g. { DISK_CHECK_INTERVAL_MS: '200' }). */
  env?: Record<string, string>;
  args?: string[];
}

/** A real `sluice bookie` process (compiled JS from dist/). */
export class BookieProcess {
  readonly proc: ChildProcess;
  output = '';
  readonly exited: Promise<number | null>;

  private constructor(
    readonly port: number,
    readonly httpPort: number,
    private readonly opts: BookieProcessOptions,
  ) {
    if (!existsSync(SLUICE_BIN))
      throw new Error(`${SLUICE_BIN} is missing; build first (npx turbo run build)`);
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      SLUICE_LOG_LEVEL: process.env.SLUICE_LOG_LEVEL ?? 'warn',
      // As the Helm chart starts bookies.
      NODE_OPTIONS: bookieNodeOptions(process.env.NODE_OPTIONS),
    };
    for (const [k, v] of Object.entries(opts.env ?? {})) env[`SLUICE_BOOKIE_${k}`] = v;
    this.proc = spawn(
      process.execPath,
      [
        SLUICE_BIN,
        'bookie',
        `--metadata=${opts.metadata}`,
        `--data-dir=${opts.dataDir}`,
        `--port=${port}`,
        `--http-port=${httpPort}`,
        `--add-port=${opts.addPort ?? 0}`,
        '--bind-host=127.0.0.1',
        `--advertise-address=127.0.0.1:${port}`,
        ...(opts.args ?? []),
      ],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const keep = (d: Buffer) => {
      this.output = (this.output + d.toString()).slice(-20_000);
    };
    this.proc.stdout?.on('data', keep);
    this.proc.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => this.proc.once('exit', (code) => resolve(code)));
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** The add channel's address, when the port was given (`bookiePorts()` does). */
  get addAddress(): string | undefined {
    return this.opts.addPort ? `127.0.0.1:${this.opts.addPort}` : undefined;
  }

  /** Spawn and wait until /readyz answers 200. */
  static async start(opts: BookieProcessOptions): Promise<BookieProcess> {
    const b = BookieProcess.spawn(opts);
    let exitCode: number | null | undefined;
    void b.exited.then((c) => {
      exitCode = c;
    });
    try {
      await waitFor(
        async () => {
          if (exitCode !== undefined) throw new Error(`bookie exited with ${exitCode}: ${b.output}`);
          const res = await fetch(`http://127.0.0.1:${b.httpPort}/readyz`);
          return res.ok;
        },
        30_000,
        'bookie process',
      );
    } catch (err) {
      b.kill('SIGKILL');
      throw err;
    }
    return b;
  }

  /** Spawn without waiting (for start-up failure tests). */
  static spawn(opts: BookieProcessOptions & { port: number; httpPort: number }): BookieProcess;
  static spawn(opts: BookieProcessOptions): BookieProcess;
  static spawn(opts: BookieProcessOptions): BookieProcess {
    if (opts.port === undefined || opts.httpPort === undefined) {
      throw new Error('BookieProcess.spawn needs explicit ports; use BookieProcess.start or freePort()');
    }
    return new BookieProcess(opts.port, opts.httpPort, opts);
  }

  kill(signal: NodeJS.Signals): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
  }

  async stop(): Promise<void> {
    this.kill('SIGTERM');
    const timer = setTimeout(() => this.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Pick ports for a bookie process (kept across its restarts when passed again). */
export async function bookiePorts(): Promise<{ port: number; httpPort: number; addPort: number }> {
  return { port: await freePort(), httpPort: await freePort(), addPort: await freePort() };
}

export function bookieClient(address: string): BookieServiceClient {
  const pkg = loadProto('bookie.proto') as unknown as {
    sluice: { v1: { BookieService: ServiceClientConstructor } };
  };
  return new pkg.sluice.v1.BookieService(address, credentials.createInsecure(), {
    'grpc.max_receive_message_length': MAX_GRPC_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_GRPC_MESSAGE_BYTES,
  }) as unknown as BookieServiceClient;
}

/** Sum of a metric's samples (optionally only the `_sum` / `_count` series) from a bookie's /metrics. */
export async function bookieMetric(bookie: { httpPort: number }, name: string, suffix = ''): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${bookie.httpPort}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const series = line.slice(0, line.search(/[ {]/));
    if (series === `${name}${suffix}`) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

export function testEntry(ledgerId: number, entryId: number, size = 256) {
  const payload = Buffer.alloc(size);
  payload.write(`${ledgerId}:${entryId}:`);
  for (let i = 16; i < size; i++) payload[i] = (ledgerId * 31 + entryId * 7 + i) & 0xff;
  return { ledgerId, entryId, lac: entryId - 1, payload, crc32c: crc32c(payload) };
}

/** Send batches of entries on one AddEntries stream; resolves with every result. */
export function addAll(
  client: BookieServiceClient,
  batches: { entries: ReturnType<typeof testEntry>[]; recovery?: boolean }[],
): Promise<AddResult__Output[]> {
  const expected = batches.reduce((n, b) => n + b.entries.length, 0);
  return new Promise((resolve, reject) => {
    const results: AddResult__Output[] = [];
    const call = client.addEntries();
    call.on('data', (res: AddEntriesResponse__Output) => {
      results.push(...res.results);
      if (results.length === expected) call.end();
    });
    call.on('error', reject);
    call.on('end', () => resolve(results));
    for (const b of batches) call.write({ entries: b.entries, recovery: b.recovery ?? false });
    if (expected === 0) call.end();
  });
}

export function readEntry(
  client: BookieServiceClient,
  ledgerId: number,
  entryId: number,
  fence = false,
): Promise<ReadEntryResponse__Output> {
  return new Promise((resolve, reject) =>
    client.readEntry({ ledgerId, entryId, fence }, (err, res) => (err ? reject(err) : resolve(res!))),
  );
}

export function unary<Req, Res>(
  fn: (req: Req, cb: (err: Error | null, res?: Res) => void) => unknown,
  req: Req,
): Promise<Res> {
  return new Promise((resolve, reject) => fn(req, (err, res) => (err ? reject(err) : resolve(res as Res))));
}
