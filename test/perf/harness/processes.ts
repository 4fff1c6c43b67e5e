import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** A child process whose output is kept (bounded) for error messages. */
export class Proc {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;

  constructor(
    readonly name: string,
    cmd: string,
    args: string[],
    env: NodeJS.ProcessEnv = {},
    private readonly onStderrLine?: (line: string) => void,
  ) {
    this.child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout?.on('data', (d: Buffer) => {
      this.stdout = (this.stdout + d.toString()).slice(-200_000);
    });
    let partial = '';
    this.child.stderr?.on('data', (d: Buffer) => {
      const text = d.toString();
      this.stderr = (this.stderr + text).slice(-20_000);
      if (!this.onStderrLine) return;
      const lines = (partial + text).split('\n');
      partial = lines.pop() ?? '';
      lines.forEach(this.onStderrLine);
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code) => resolve(code));
      this.child.once('error', (err) => {
        this.stderr += `\nspawn failed: ${err.message}`;
        resolve(-1);
      });
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** The last JSON line on stdout after a clean exit. */
  async json<T>(): Promise<T> {
    const code = await this.exited;
    const line = this.stdout
      .trim()
      .split('\n')
      .reverse()
      .find((l) => l.startsWith('{'));
    if (code !== 0 || !line) {
      throw new Error(
        `${this.name} exited with ${code} without a JSON summary:\n${this.stderr.slice(-3000)}`,
      );
    }
    return JSON.parse(line) as T;
  }

  /** Resolves when a stderr line contains `marker`; rejects when the process exits first. */
  waitForStderr(marker: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => this.stderr.includes(marker);
      if (check()) return resolve();
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new Error(`${this.name}: no '${marker}' within ${timeoutMs} ms:\n${this.stderr.slice(-3000)}`),
        );
      }, timeoutMs);
      const onData = () => {
        if (check()) {
          cleanup();
          resolve();
        }
      };
      const onExit = () => {
        cleanup();
        reject(new Error(`${this.name} exited before '${marker}':\n${this.stderr.slice(-3000)}`));
      };
      const cleanup = () => {
        clearTimeout(timer);
        this.child.stderr?.off('data', onData);
        this.child.off('exit', onExit);
      };
      this.child.stderr?.on('data', onData);
      this.child.once('exit', onExit);
    });
  }
}

/** Bytes a process caused to be written to storage (Linux /proc/PID/io), 0 when unavailable. */
export function writeBytesOf(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const m = /write_bytes: (\d+)/.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}
