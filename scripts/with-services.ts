/**
 * Run one command with a real etcd and s3rver started on free loopback ports
 * (the same environment `npm test` gives the suites), e.g.
 *   node --import=tsx scripts/with-services.ts npx ava --config ava.integration.config.js test/integration/x.test.ts
 */
import { spawn } from 'node:child_process';
import { EtcdServer } from '../test/support/etcd.js';
import { S3Server } from '../test/support/s3.js';

const [cmd, ...args] = process.argv.slice(2);
if (!cmd) {
  console.error('usage: with-services.ts COMMAND [ARGS...]');
  process.exit(2);
}
const etcd = await EtcdServer.start();
const s3 = await S3Server.start(['sluice-test']);
const child = spawn(cmd, args, {
  stdio: 'inherit',
  env: {
    ...process.env,
    SLUICE_TEST_ETCD: etcd.endpoint,
    SLUICE_TEST_S3: s3.endpoint,
    SLUICE_TEST_S3_BUCKET: 'sluice-test',
    SLUICE_LOG_LEVEL: process.env.SLUICE_LOG_LEVEL ?? 'silent',
  },
});
const stop = async () => {
  await etcd.destroy().catch(() => {});
  await s3.stop().catch(() => {});
};
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig));
child.on('exit', (code) => {
  void stop().then(() => process.exit(code ?? 1));
});
