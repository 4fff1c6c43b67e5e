// `npm start`: build, then run `sluice standalone` (gRPC :6650, HTTP :8080).
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

const root = new URL('..', import.meta.url).pathname;
execFileSync('npx', ['turbo', 'run', 'build', '--output-logs=errors-only'], { cwd: root, stdio: 'inherit' });
const bin = `${root}packages/cli/dist/bin.js`;
if (!existsSync(bin)) {
  console.log('Sluice: the `sluice` CLI is not built yet; packages present:');
  execFileSync('ls', ['packages'], { cwd: root, stdio: 'inherit' });
  process.exit(0);
}
const child = spawn(process.execPath, [bin, 'standalone', ...process.argv.slice(2)], {
  cwd: root,
  stdio: 'inherit',
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code) => process.exit(code ?? 0));
