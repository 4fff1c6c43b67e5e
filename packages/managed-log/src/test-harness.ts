/** Unit-test rig: the real ledger client over in-memory bookies, the embedded metadata store, a filesystem offloader. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Clock, systemClock } from '@sluice/common';
import {
  BookKeeperClient,
  type LedgerWriterOptions,
  MemoryBookie,
  MemoryBookiePool,
  StaticBookieDirectory,
} from '@sluice/ledger';
import { EmbeddedMetadataStore } from '@sluice/metadata';
import { FilesystemOffloader } from '@sluice/offload';
import type { ManagedLogConfig } from './api.js';
import { ManagedLogFactory } from './managed-log-factory.js';

export interface Rig {
  dir: string;
  metadata: EmbeddedMetadataStore;
  bookies: MemoryBookie[];
  ledgers: BookKeeperClient;
  offloader: FilesystemOffloader;
  factory(opts?: {
    clock?: Clock;
    defaults?: Partial<ManagedLogConfig>;
    offload?: boolean;
  }): ManagedLogFactory;
  /** A second ledger client (another "process") over the same bookies and metadata. */
  otherClient(opts?: LedgerWriterOptions): BookKeeperClient;
  close(): Promise<void>;
}

export const FAST: Partial<ManagedLogConfig> = {
  ensembleSize: 2,
  writeQuorum: 2,
  ackQuorum: 2,
  minLedgerAgeMs: 0,
  ackFlushDelayMs: 10,
  maintenanceIntervalMs: 3_600_000,
};

export async function createRig(bookieCount = 3): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), 'managed-log-'));
  const metadata = await EmbeddedMetadataStore.open({ dataDir: join(dir, 'meta') });
  const bookies = Array.from({ length: bookieCount }, (_, i) => new MemoryBookie(`bookie-${i}`));
  const pool = new MemoryBookiePool(bookies);
  const directory = new StaticBookieDirectory(
    bookies.map((b) => ({ bookieId: b.bookieId, address: `mem:${b.bookieId}`, readOnly: false })),
  );
  const clients: BookKeeperClient[] = [];
  const newClient = (opts: LedgerWriterOptions = {}) => {
    const c = new BookKeeperClient({ ...opts, metadata, pool, directory });
    clients.push(c);
    return c;
  };
  const ledgers = newClient();
  const offloader = new FilesystemOffloader({ dir: join(dir, 'offload') });
  const factories: ManagedLogFactory[] = [];
  return {
    dir,
    metadata,
    bookies,
    ledgers,
    offloader,
    factory(opts = {}) {
      const f = new ManagedLogFactory({
        metadata,
        ledgers: newClient(),
        clock: opts.clock ?? systemClock,
        defaults: { ...FAST, ...opts.defaults },
        ...(opts.offload === false ? {} : { offloader }),
      });
      factories.push(f);
      return f;
    },
    otherClient: newClient,
    async close() {
      for (const f of factories) await f.close();
      for (const c of clients) await c.close();
      await offloader.close();
      await metadata.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
