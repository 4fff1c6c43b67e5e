import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { NotFoundError } from '@sluice/common';
import { type OffloadEntry, type Offloader, type OffloadSource, openOffloader } from '@sluice/offload';
import test, { type ExecutionContext } from 'ava';

const endpoint = process.env.SLUICE_TEST_S3;
const bucket = process.env.SLUICE_TEST_S3_BUCKET ?? 'sluice-test';
if (!endpoint) throw new Error('SLUICE_TEST_S3 is not set; run through scripts/with-services.ts');
process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';

const LAST_ENTRY_ID = 3999;
const KILL_AFTER_ENTRY = 2000;

/**
 * The child offloads a ledger from the compiled package, slowly, printing
 * each batch it reads, so the test can kill -9 it with several MiB uploaded.
 */
const CHILD = `
import { openOffloader } from '@sluice/offload';
const { url, ledgerId, uuid, lastEntryId } = JSON.parse(process.env.OFFLOAD_CHILD);
const offloader = openOffloader(url);
process.stdout.write('started\\n');
await offloader.offload({
  ledgerId, lastEntryId, metadata: {},
  async readEntries(first, last) {
    await new Promise((r) => setTimeout(r, 15));
    process.stdout.write('read ' + first + '\\n');
    const out = [];
    for (let id = first; id <= last; id++) out.push({ entryId: id, payload: Buffer.alloc(4096, id & 0xff) });
    return out;
  },
}, { uuid });
process.stdout.write('done\\n');
`;

function payload(entryId: number): Buffer {
  const buf = Buffer.allocUnsafe(4096);
  for (let i = 0; i < buf.length; i++) buf[i] = (entryId * 13 + i) & 0xff;
  return buf;
}

function source(ledgerId: number): OffloadSource {
  return {
    ledgerId,
    lastEntryId: LAST_ENTRY_ID,
    metadata: {},
    async readEntries(first, last) {
      const out: OffloadEntry[] = [];
      for (let id = first; id <= last; id++) out.push({ entryId: id, payload: payload(id) });
      return out;
    },
  };
}

/** Run the child until it has read past KILL_AFTER_ENTRY, then SIGKILL it. */
async function offloadAndKill(
  t: ExecutionContext,
  url: string,
  ledgerId: number,
  uuid: string,
): Promise<void> {
  const child: ChildProcess = spawn(process.execPath, ['--input-type=module', '-e', CHILD], {
    cwd: process.cwd(),
    env: {
      ...process.env,
      OFFLOAD_CHILD: JSON.stringify({ url, ledgerId, uuid, lastEntryId: LAST_ENTRY_ID }),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.on('exit', (_code, signal) => resolve(signal)),
  );
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const reads = [...out.matchAll(/read (\d+)/g)].map((m) => Number(m[1]));
      if (reads.some((r) => r >= KILL_AFTER_ENTRY)) {
        child.kill('SIGKILL');
        resolve();
      }
      if (out.includes('done')) reject(new Error('child finished before it was killed; slow it down'));
    });
    child.on('exit', () => reject(new Error(`child exited before the kill: ${stderr}`)));
  });
  t.is(await exited, 'SIGKILL');
}

async function retryAndVerify(
  t: ExecutionContext,
  offloader: Offloader,
  ledgerId: number,
  crashedUuid: string,
) {
  const listed = await offloader.list(ledgerId);
  t.false(
    listed.some((l) => l.complete),
    `no complete offload after the crash: ${JSON.stringify(listed)}`,
  );
  await t.throwsAsync(offloader.openReader(ledgerId, crashedUuid), { instanceOf: NotFoundError });

  const retry = await offloader.offload(source(ledgerId));
  t.not(retry.uuid, crashedUuid);
  const reader = await offloader.openReader(ledgerId, retry.uuid);
  const entries = await reader.read(0, LAST_ENTRY_ID);
  t.is(entries.length, LAST_ENTRY_ID + 1);
  t.true(entries.every((e) => e.payload.equals(payload(e.entryId))));
  await reader.close();
  const after = await offloader.list(ledgerId);
  t.deepEqual(
    after.filter((l) => l.complete).map((l) => l.uuid),
    [retry.uuid],
  );
}

test('offload crash - kill -9 mid-upload to S3 leaves nothing complete and the retry completes', async (t) => {
  const prefix = `crash-${randomUUID()}`;
  const url = `s3://${bucket}/${prefix}?endpoint=${encodeURIComponent(endpoint!)}&partSize=5242880`;
  const crashedUuid = randomUUID();
  await offloadAndKill(t, url, 21, crashedUuid);

  // The multipart upload was never completed, so not even the data object exists.
  const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true });
  t.teardown(() => client.destroy());
  await t.throwsAsync(
    client.send(new HeadObjectCommand({ Bucket: bucket, Key: `${prefix}/ledger-21/${crashedUuid}.data` })),
  );

  const offloader = openOffloader(url);
  t.teardown(() => offloader.close());
  await retryAndVerify(t, offloader, 21, crashedUuid);
});

test('offload crash - kill -9 mid-write to a directory leaves only temp files and the retry completes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-offload-crash-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const url = `file://${dir}`;
  const crashedUuid = randomUUID();
  await offloadAndKill(t, url, 22, crashedUuid);

  const files = readdirSync(join(dir, 'ledger-22'));
  t.true(files.length > 0, 'the crashed attempt left its temp file');
  t.true(
    files.every((f) => f.includes('.tmp-')),
    `only temp files remain: ${files.join(', ')}`,
  );

  const offloader = openOffloader(url);
  t.teardown(() => offloader.close());
  await retryAndVerify(t, offloader, 22, crashedUuid);
});
