import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { BookieProcess, bookiePorts, SLUICE_BIN } from './bookie-process.js';
import { freePort, waitFor } from './ports.js';

/** A `sluice broker` or `sluice standalone` process (compiled JS from dist/). */
export class SluiceProcess {
  readonly proc: ChildProcess;
  output = '';
  readonly exited: Promise<number | null>;

  private constructor(
    readonly port: number,
    readonly httpPort: number,
    args: string[],
    env: Record<string, string>,
  ) {
    if (!existsSync(SLUICE_BIN))
      throw new Error(`${SLUICE_BIN} is missing; build first (npx turbo run build)`);
    this.proc = spawn(process.execPath, [SLUICE_BIN, ...args], {
      env: { ...process.env, SLUICE_LOG_LEVEL: process.env.SLUICE_LOG_LEVEL ?? 'warn', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
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

  get url(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Spawn and wait until /readyz answers 200. */
  static async start(
    command: 'broker' | 'standalone',
    opts: { port?: number; httpPort?: number; args?: string[]; env?: Record<string, string> } = {},
  ): Promise<SluiceProcess> {
    // A port freePort() picked can be taken (e.g. as another connection's
    // ephemeral port) before the process binds it: pick again, unless the
    // caller chose the ports.
    const attempts = opts.port === undefined && opts.httpPort === undefined ? 3 : 1;
    for (let attempt = 1; ; attempt++) {
      try {
        return await SluiceProcess.startOnce(command, opts);
      } catch (err) {
        if (attempt >= attempts || !/EADDRINUSE/.test(String(err))) throw err;
      }
    }
  }

  private static async startOnce(
    command: 'broker' | 'standalone',
    opts: { port?: number; httpPort?: number; args?: string[]; env?: Record<string, string> },
  ): Promise<SluiceProcess> {
    const port = opts.port ?? (await freePort());
    const httpPort = opts.httpPort ?? (await freePort());
    const args = [
      command,
      `--port=${port}`,
      `--http-port=${httpPort}`,
      '--bind-host=127.0.0.1',
      ...(opts.args ?? []),
    ];
    const p = new SluiceProcess(port, httpPort, args, opts.env ?? {});
    let exitCode: number | null | undefined;
    void p.exited.then((c) => {
      exitCode = c;
    });
    try {
      await waitFor(
        async () => {
          if (exitCode !== undefined)
            throw new Error(`sluice ${command} exited with ${exitCode}: ${p.output}`);
          const res = await fetch(`http://127.0.0.1:${httpPort}/readyz`);
          return res.ok;
        },
        30_000,
        `sluice ${command}`,
      );
    } catch (err) {
      p.kill('SIGKILL');
      await p.exited;
      throw err;
    }
    return p;
  }

  /** Run `sluice <args>` to completion (for start-up failure checks). */
  static run(
    args: string[],
    env: Record<string, string> = {},
  ): Promise<{ code: number | null; output: string }> {
    const p = new SluiceProcess(0, 0, args, env);
    return p.exited.then((code) => ({ code, output: p.output }));
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

/** Start `sluice standalone` on free ports with data under `dataDir`. */
export function startStandalone(
  dataDir: string,
  ports: { port?: number; httpPort?: number } = {},
): Promise<SluiceProcess> {
  return SluiceProcess.start('standalone', { ...ports, args: [`--data-dir=${dataDir}`] });
}

/** Start `sluice broker` against `metadata` (etcd URL), advertising 127.0.0.1. */
export async function startBroker(
  metadata: string,
  opts: { port?: number; httpPort?: number; offload?: string; sessionTtl?: string } = {},
): Promise<SluiceProcess> {
  // As in SluiceProcess.start: a picked port may be taken before the broker binds it.
  const attempts = opts.port === undefined && opts.httpPort === undefined ? 3 : 1;
  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (await freePort());
    try {
      return await SluiceProcess.start('broker', {
        port,
        httpPort: opts.httpPort ?? (await freePort()),
        args: [
          `--metadata=${metadata}`,
          `--advertise-address=127.0.0.1:${port}`,
          `--session-ttl=${opts.sessionTtl ?? '3s'}`,
          ...(opts.offload ? [`--offload=${opts.offload}`] : []),
        ],
      });
    } catch (err) {
      if (attempt >= attempts || !/EADDRINUSE/.test(String(err))) throw err;
    }
  }
}

/** Start `count` bookie processes under `baseDir`. */
export async function startBookies(
  metadata: string,
  baseDir: string,
  count: number,
): Promise<BookieProcess[]> {
  const out: BookieProcess[] = [];
  for (let i = 0; i < count; i++) {
    out.push(
      await BookieProcess.start({ metadata, dataDir: `${baseDir}/bookie-${i}`, ...(await bookiePorts()) }),
    );
  }
  return out;
}
