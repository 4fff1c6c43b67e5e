import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnavailableError } from '@sluice/common';
import { EtcdMetadataStore } from '@sluice/metadata';
import test from 'ava';
import { ConnectionPool } from 'etcd3/lib/connection-pool.js';
import { ETCD_BIN, ensureEtcd } from '../support/etcd.js';
import { freePort, waitFor } from '../support/ports.js';

const b = (s: string) => Buffer.from(s);

/** A proxy to `port` that can drop etcd's answers on the connections open now; new ones pass. */
async function holdingProxy(t: { teardown(fn: () => void): void }, port: number) {
  const open = new Map<Socket, { held: boolean }>();
  const server = createServer((client) => {
    const up = connect(port, '127.0.0.1');
    const state = { held: false };
    open.set(client, state);
    const done = () => {
      client.destroy();
      up.destroy();
      open.delete(client);
    };
    for (const s of [client, up]) s.on('error', done).on('close', done);
    client.on('data', (d) => up.write(d));
    up.on('data', (d) => state.held || client.write(d));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => {
    for (const s of open.keys()) s.destroy();
    server.close();
  });
  const addr = server.address();
  return {
    address: `127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`,
    hold: () => {
      for (const s of open.values()) s.held = true;
    },
  };
}

test('etcd ambiguity - a conditional write applied but unanswered is not reported as a conflict', async (t) => {
  const etcdPort = Number((process.env.SLUICE_TEST_ETCD ?? '').split(':')[1]);
  // Every call goes to the second endpoint first; its answers get lost, the retry reconnects.
  ConnectionPool.deterministicOrder = true;
  t.teardown(() => {
    ConnectionPool.deterministicOrder = false;
  });
  const [a, lossy] = [await holdingProxy(t, etcdPort), await holdingProxy(t, etcdPort)];
  const prefix = '/sluice-test/ambiguity';
  const store = new EtcdMetadataStore({
    endpoints: [a.address, lossy.address],
    prefix,
    callTimeoutMs: 1000,
  });
  t.teardown(() => store.close());
  const direct = new EtcdMetadataStore({
    endpoints: [process.env.SLUICE_TEST_ETCD as string],
    prefix,
  });
  t.teardown(() => direct.close());
  const session = await store.createSession(10_000);
  const lose = async <T>(write: () => Promise<T>) => {
    await store.get('warm-up');
    lossy.hold();
    return write();
  };

  const created = await lose(() => store.put('owner', b('me'), { createOnly: true, session }));
  t.is((await direct.get('owner'))?.version, created);
  const v1 = await direct.put('cas', b('v1'));
  const v2 = await lose(() => store.put('cas', b('v2'), { expectedVersion: v1, session }));
  t.is((await direct.get('cas'))?.version, v2);
  const d = await direct.put('gone', b('x'));
  t.true(await lose(() => store.delete('gone', { expectedVersion: d })));
  // Without a session equal bytes could be another writer's: the outcome is unknown, not a conflict.
  const err = await t.throwsAsync(
    lose(() => store.put('plain', b('x'), { createOnly: true })),
    {
      instanceOf: UnavailableError,
    },
  );
  t.regex(err?.message ?? '', /outcome unknown/);
  t.is((await direct.get('plain'))?.value.toString(), 'x');
  await session.close();
});

test('etcd ambiguity - a quiet watch survives compaction past its start and an etcd restart', async (t) => {
  ensureEtcd();
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), 'sluice-etcd-progress-'));
  const url = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  let etcd: ReturnType<typeof spawn> | undefined;
  const start = async () => {
    etcd = spawn(
      ETCD_BIN,
      [
        '--name=progress',
        `--data-dir=${dir}`,
        `--listen-client-urls=${url}`,
        `--advertise-client-urls=${url}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=progress=${peer}`,
        '--log-level=error',
        '--logger=zap',
        '--experimental-watch-progress-notify-interval=500ms',
      ],
      { stdio: 'ignore' },
    );
    await waitFor(
      async () => (await fetch(`${url}/health`).catch(() => undefined))?.ok === true,
      20_000,
      'etcd',
    );
  };
  const kill = () =>
    new Promise<void>((r) => {
      etcd?.once('exit', () => r());
      etcd?.kill('SIGKILL');
    });
  await start();
  t.teardown(async () => {
    await kill();
    rmSync(dir, { recursive: true, force: true });
  });
  const store = new EtcdMetadataStore({
    endpoints: [`127.0.0.1:${clientPort}`],
    prefix: '/sluice-test/progress',
  });
  t.teardown(() => store.close());
  const seen: string[] = [];
  let failed: Error | undefined;
  await store.watch('ns/', (ev) => seen.push(`${ev.type} ${ev.key}`), {
    onError: (e) => (failed = e),
  });
  for (let i = 0; i < 5; i++) await store.put(`other/${i}`, b('x'));
  await new Promise((r) => setTimeout(r, 1500)); // past a progress notification
  const rev = await store.revision();
  const res = await fetch(`${url}/v3/kv/compaction`, {
    method: 'POST',
    body: JSON.stringify({ revision: String(rev) }),
  });
  t.true(res.ok);
  await kill();
  await start();
  await store.put('ns/a', b('1'));
  await waitFor(() => seen.length > 0 || failed !== undefined, 10_000, 'the watch resumed');
  t.is(failed, undefined);
  t.deepEqual(seen, ['put ns/a']);
});
