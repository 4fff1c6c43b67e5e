import { DEFAULT_SERVICE_URL, SluiceClient } from '@sluice/client';
import { asSluiceError, InvalidArgumentError } from '@sluice/common';
import { type Command, InvalidArgumentError as InvalidOptionError } from 'commander';

/** Options every client-side verb takes. */
export interface ConnectionFlags {
  url?: string;
  json?: boolean;
}

/** Add `--url` and `--json` to a client-side command. */
export function withConnection(cmd: Command): Command {
  return cmd
    .option('--url <url>', `broker to talk to (env SLUICE_URL, default ${DEFAULT_SERVICE_URL})`)
    .option('--json', 'print machine-readable JSON (one object per line)');
}

export function createClient(flags: ConnectionFlags): SluiceClient {
  return new SluiceClient({ serviceUrl: flags.url ?? process.env.SLUICE_URL ?? DEFAULT_SERVICE_URL });
}

/** One compact JSON object per line (scripts read it with a line reader). */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

export function printLine(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** Human form of a nested record: indented `key: value` lines. */
export function printRecord(value: unknown, indent = ''): void {
  if (Array.isArray(value)) {
    if (value.length === 0) printLine(`${indent}(none)`);
    value.forEach((item, i) => {
      if (item !== null && typeof item === 'object') {
        printLine(`${indent}- [${i}]`);
        printRecord(item, `${indent}  `);
      } else printLine(`${indent}- ${String(item)}`);
    });
    return;
  }
  for (const [k, v] of Object.entries((value ?? {}) as Record<string, unknown>)) {
    if (k.startsWith('_')) continue;
    if (v !== null && typeof v === 'object') {
      printLine(`${indent}${k}:`);
      printRecord(v, `${indent}  `);
    } else printLine(`${indent}${k}: ${String(v)}`);
  }
}

/**
 * Run a command body with a client: one-line error and exit code 1 on
 * failure, and the client (channels, streams) always closed so the process
 * can exit.
 */
export async function withClient(
  flags: ConnectionFlags,
  body: (client: SluiceClient) => Promise<void>,
): Promise<void> {
  let client: SluiceClient | undefined;
  try {
    client = createClient(flags);
    await body(client);
  } catch (err) {
    const e = asSluiceError(err);
    process.stderr.write(`error: ${e.message}${e.code === 'UNAVAILABLE' ? hintFor(flags) : ''}\n`);
    process.exitCode = 1;
  } finally {
    await client?.close();
  }
}

function hintFor(flags: ConnectionFlags): string {
  const url = flags.url ?? process.env.SLUICE_URL ?? DEFAULT_SERVICE_URL;
  return ` (is a broker running at ${url}? set --url or SLUICE_URL)`;
}

/** Commander argument parser for positive integers. */
export function positiveInt(what: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    // commander's own error type: it prints a one-line usage error and exits non-zero.
    if (!Number.isInteger(n) || n < 1)
      throw new InvalidOptionError(`${what} '${value}' must be a positive integer`);
    return n;
  };
}

/** Commander collector for repeatable options. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `k=v` pairs into a record. */
export function parseProperties(pairs: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of pairs ?? []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new InvalidArgumentError(`property '${pair}' is malformed; use key=value`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}
