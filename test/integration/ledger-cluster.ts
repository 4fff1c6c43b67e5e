/**
 * Real bookie processes on a fresh prefix of the shared test etcd, plus the
 * metadata store and ledger clients the ledger integration tests drive them with.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type BookieDirectory,
  type BookieInfo,
  BookKeeperClient,
  type LedgerClientOptions,
  MetadataBookieDirectory,
} from '@sluice/ledger';
import { type MetadataStore, openMetadataStore } from '@sluice/metadata';
import { BookieProcess, bookiePorts, testMetadataUrl } from '../support/bookie-process.js';
import { waitFor } from '../support/ports.js';

export class LedgerCluster {
  readonly bookies: BookieProcess[] = [];
  private readonly dirs: string[] = [];
  private readonly clients: BookKeeperClient[] = [];
  /** bookieId → process */
  readonly byId = new Map<string, BookieProcess>();

  private constructor(
    readonly url: string,
    readonly metadata: MetadataStore,
  ) {}

  static async start(area: string, count: number): Promise<LedgerCluster> {
    const url = testMetadataUrl(area);
    const metadata = await openMetadataStore(url);
    const c = new LedgerCluster(url, metadata);
    try {
      await Promise.all(Array.from({ length: count }, () => c.addBookie()));
      await c.waitRegistered(count);
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  async addBookie(): Promise<BookieProcess> {
    const dataDir = mkdtempSync(join(tmpdir(), 'sluice-ledger-it-'));
    this.dirs.push(dataDir);
    const b = await BookieProcess.start({
      metadata: this.url,
      dataDir,
      ...(await bookiePorts()),
      env: { SESSION_TTL_MS: '2000' },
    });
    this.bookies.push(b);
    return b;
  }

  /** Registered bookies (fresh listing). */
  async registered(): Promise<BookieInfo[]> {
    return new MetadataBookieDirectory(this.metadata, 0).list();
  }

  async waitRegistered(count: number): Promise<void> {
    await waitFor(
      async () => (await this.registered()).length === count,
      20_000,
      `${count} bookie registrations`,
    );
    for (const info of await this.registered()) {
      const proc = this.bookies.find((b) => b.address === info.address);
      if (proc) this.byId.set(info.bookieId, proc);
    }
  }

  client(opts: Partial<LedgerClientOptions> = {}): BookKeeperClient {
    const c = new BookKeeperClient({
      metadata: this.metadata,
      addTimeoutMs: 3000,
      readTimeoutMs: 3000,
      speculativeTimeoutMs: 500,
      recoveryTimeoutMs: 30_000,
      ...opts,
    });
    this.clients.push(c);
    return c;
  }

  /** A directory that routes one bookie through another address (a proxy). */
  directoryVia(bookieId: string, address: string): BookieDirectory {
    const inner = new MetadataBookieDirectory(this.metadata, 0);
    return {
      list: async () => (await inner.list()).map((b) => (b.bookieId === bookieId ? { ...b, address } : b)),
    };
  }

  async stop(): Promise<void> {
    for (const c of this.clients) await c.close().catch(() => {});
    await Promise.all(this.bookies.map((b) => b.stop().catch(() => {})));
    await this.metadata.close().catch(() => {});
    for (const d of this.dirs) rmSync(d, { recursive: true, force: true });
  }
}
