import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '@sluice/common';
import type { ManagedLog } from '@sluice/managed-log';
import { EmbeddedMetadataStore, type MetadataStore } from '@sluice/metadata';
import type { ExecutionContext } from 'ava';
import { Broker, type BrokerOptions } from '../broker.js';
import { MemoryLog } from './memory-log.js';

/** A TCP port free right now on 127.0.0.1 (to advertise a broker's address before it binds). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** An embedded metadata store in a temporary dir, closed and removed when the test ends. */
export async function embeddedStore(t: ExecutionContext): Promise<EmbeddedMetadataStore> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-broker-test-'));
  const store = await EmbeddedMetadataStore.open({ dataDir: dir });
  t.teardown(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return store;
}

/** Memory logs by topic path, as a broker opens them. */
export class MemoryLogs {
  readonly byPath = new Map<string, MemoryLog>();
  /** Called on every open, to let a test adjust the log before the topic uses it. */
  onOpen: (path: string, log: MemoryLog) => void = () => undefined;

  async open(path: string): Promise<ManagedLog> {
    const log = new MemoryLog();
    this.byPath.set(path, log);
    this.onOpen(path, log);
    return log.asLog();
  }
}

/**
 * A broker on 127.0.0.1 over `store` and memory logs, advertising its real
 * address, closed when the test ends.
 */
export async function startBroker(
  t: ExecutionContext,
  store: MetadataStore,
  brokerId: string,
  opts: Partial<BrokerOptions> = {},
): Promise<{ broker: Broker; logs: MemoryLogs }> {
  const logs = new MemoryLogs();
  const port = opts.port ?? (await freePort());
  const broker = await Broker.start({
    metadata: store,
    logs,
    bindHost: '127.0.0.1',
    port,
    httpPort: 0,
    advertiseAddress: `127.0.0.1:${port}`,
    brokerId,
    defaultPersistence: { ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 },
    logger: silentLogger,
    ...opts,
  });
  t.teardown(() => broker.close());
  return { broker, logs };
}
