import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

let updated = false;

/** Install Debian packages when `probe` (an absolute path) is missing. `apt-get update` runs once. */
export function ensureDebianPackages(probe: string, packages: string[]): void {
  if (existsSync(probe)) return;
  const opts = { stdio: ['ignore', 'ignore', 'inherit'] as ('ignore' | 'inherit')[] };
  process.stderr.write(`installing ${packages.join(' ')} (apt-get)\n`);
  if (!updated) {
    execFileSync('apt-get', ['update', '-qq'], opts);
    updated = true;
  }
  execFileSync('apt-get', ['install', '-y', '-qq', ...packages], {
    ...opts,
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (!existsSync(probe)) throw new Error(`${probe} still missing after installing ${packages.join(' ')}`);
}
