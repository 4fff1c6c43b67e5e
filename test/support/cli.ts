import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { SLUICE_BIN } from './bookie-process.js';

const run = promisify(execFile);

export interface CliResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** Run `sluice ARGS` (compiled CLI) against the broker at `url`, optionally feeding `input` on stdin. */
export async function runSluice(url: string, args: string[], input?: string): Promise<CliResult> {
  const env = { ...process.env, SLUICE_URL: url };
  if (input !== undefined) {
    return new Promise((resolve) => {
      const p = spawn(process.execPath, [SLUICE_BIN, ...args], { env });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d) => (stdout += d));
      p.stderr.on('data', (d) => (stderr += d));
      p.on('close', (code) => resolve({ stdout, stderr, code: code ?? -1 }));
      p.stdin.end(input);
    });
  }
  try {
    const { stdout, stderr } = await run(process.execPath, [SLUICE_BIN, ...args], { env, timeout: 60_000 });
    return { stdout, stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout: string; stderr: string; code: number };
    return { stdout: e.stdout, stderr: e.stderr, code: e.code };
  }
}

/** Parse the one-object-per-line output of `--json` commands. */
export const jsonLines = (text: string): Record<string, unknown>[] =>
  text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
