import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { InvalidArgumentError } from './errors.js';

/**
 * Configuration is layered: flags > environment > config file > defaults.
 * A schema (zod) declares each setting with its default and doc; any invalid
 * value fails with one line naming the key.
 */
export interface LoadConfigOptions {
  /** Values given on the command line (undefined means "not given"). */
  flags?: Record<string, unknown>;
  /** Environment variables are read as `${envPrefix}${SCREAMING_SNAKE_KEY}`. */
  envPrefix?: string;
  env?: NodeJS.ProcessEnv;
  /** A JSON config file. */
  file?: string;
}

export function envName(prefix: string, key: string): string {
  return prefix + key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

export function loadConfig<S extends z.ZodObject<z.ZodRawShape>>(
  schema: S,
  opts: LoadConfigOptions = {},
): z.infer<S> {
  const merged: Record<string, unknown> = {};
  if (opts.file) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(opts.file, 'utf8'));
    } catch (err) {
      throw new InvalidArgumentError(`config file ${opts.file} is unreadable: ${(err as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new InvalidArgumentError(`config file ${opts.file} must hold a JSON object`);
    }
    Object.assign(merged, parsed);
  }
  const env = opts.env ?? process.env;
  if (opts.envPrefix !== undefined) {
    for (const key of Object.keys(schema.shape)) {
      const v = env[envName(opts.envPrefix, key)];
      if (v !== undefined) merged[key] = v;
    }
  }
  for (const [k, v] of Object.entries(opts.flags ?? {})) if (v !== undefined) merged[k] = v;
  const result = schema.safeParse(merged);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const key = issue.path.join('.') || '(root)';
    throw new InvalidArgumentError(`invalid setting '${key}': ${issue.message}`);
  }
  return result.data;
}

/** Parse sizes like `512K`, `10G`, `1048576` into bytes. */
export function parseSize(text: string | number): number {
  if (typeof text === 'number') return text;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$/i.exec(text);
  if (!m) throw new InvalidArgumentError(`size '${text}' is malformed; use e.g. 512K, 10M, 1G or bytes`);
  const unit = (m[2] ?? 'b').toLowerCase()[0]!;
  const mult = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[unit] ?? 1;
  return Math.round(Number(m[1]) * mult);
}

/** Parse durations like `500ms`, `30s`, `7d` into milliseconds. */
export function parseDuration(text: string | number): number {
  if (typeof text === 'number') return text;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$/i.exec(text);
  if (!m) throw new InvalidArgumentError(`duration '${text}' is malformed; use e.g. 500ms, 30s, 5m, 7d`);
  const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[
    (m[2] ?? 'ms').toLowerCase() as 'ms'
  ];
  return Math.round(Number(m[1]) * mult);
}

/** zod helpers for settings that accept human sizes / durations from env or flags. */
export const zSize = z.union([z.number().int().nonnegative(), z.string()]).transform((v, ctx) => {
  try {
    return parseSize(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

export const zDuration = z.union([z.number().nonnegative(), z.string()]).transform((v, ctx) => {
  try {
    return parseDuration(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

export { z };
