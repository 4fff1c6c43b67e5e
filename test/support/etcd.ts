import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureDebianPackages } from './apt.js';
import { freePort, waitFor } from './ports.js';

export const ETCD_BIN = '/usr/bin/etcd';

export function ensureEtcd(): void {
  ensureDebianPackages(ETCD_BIN, ['etcd-server']);
}

/** A real etcd process on free loopback ports with a temp data dir. */
export class EtcdServer {
  private proc: ChildProcess | undefined;
  readonly endpoint: string;

  private constructor(
    readonly clientPort: number,
    private readonly peerPort: number,
    readonly dataDir: string,
  ) {
    this.endpoint = `127.0.0.1:${clientPort}`;
  }

  static async start(opts: { clientPort?: number; dataDir?: string } = {}): Promise<EtcdServer> {
    ensureEtcd();
    const server = new EtcdServer(
      opts.clientPort ?? (await freePort()),
      await freePort(),
      opts.dataDir ?? mkdtempSync(join(tmpdir(), 'sluice-etcd-')),
    );
    await server.resume();
    return server;
  }

  /** Start (again) on the same ports and data dir. */
  async resume(): Promise<void> {
    const client = `http://127.0.0.1:${this.clientPort}`;
    const peer = `http://127.0.0.1:${this.peerPort}`;
    this.proc = spawn(
      ETCD_BIN,
      [
        '--name=sluice-test',
        `--data-dir=${this.dataDir}`,
        `--listen-client-urls=${client}`,
        `--advertise-client-urls=${client}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=sluice-test=${peer}`,
        '--log-level=error',
        '--logger=zap',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    this.proc.stderr?.on('data', (d) => {
      stderr = (stderr + d).slice(-4000);
    });
    const proc = this.proc;
    await waitFor(
      async () => {
        if (proc.exitCode !== null) throw new Error(`etcd exited: ${stderr}`);
        const res = await fetch(`${client}/health`);
        return res.ok;
      },
      20_000,
      'etcd',
    );
  }

  /** Stop the process (SIGKILL), keeping the data dir. */
  async stop(): Promise<void> {
    const proc = this.proc;
    this.proc = undefined;
    if (!proc || proc.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill('SIGKILL');
    });
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
