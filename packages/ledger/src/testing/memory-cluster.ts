/**
 * An in-process cluster for unit and property tests: in-memory bookies, a
 * static bookie directory and an embedded metadata store in a temp dir.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedMetadataStore } from '@sluice/metadata';
import type { BookieInfo } from '../bookie-directory.js';
import { StaticBookieDirectory } from '../bookie-directory.js';
import { BookKeeperClient, type LedgerClientOptions } from '../bookkeeper-client.js';
import { MemoryBookie, type MemoryBookieFaults, MemoryBookiePool } from '../memory-bookie.js';

export class MemoryCluster {
  readonly bookies: MemoryBookie[];
  readonly pool: MemoryBookiePool;
  readonly directory: StaticBookieDirectory;
  private readonly clients: BookKeeperClient[] = [];

  private constructor(
    readonly metadata: EmbeddedMetadataStore,
    private readonly dir: string,
    count: number,
    faults: MemoryBookieFaults,
    random: () => number,
  ) {
    this.bookies = Array.from(
      { length: count },
      (_, i) => new MemoryBookie(`b${i + 1}`, { ...faults }, random),
    );
    this.pool = new MemoryBookiePool(this.bookies);
    this.directory = new StaticBookieDirectory(this.bookies.map((b) => this.info(b)));
  }

  static async start(
    count: number,
    faults: MemoryBookieFaults = {},
    random: () => number = Math.random,
  ): Promise<MemoryCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-ledger-test-'));
    const metadata = await EmbeddedMetadataStore.open({ dataDir: dir });
    return new MemoryCluster(metadata, dir, count, faults, random);
  }

  private info(b: MemoryBookie): BookieInfo {
    return { bookieId: b.bookieId, address: `memory:${b.bookieId}`, readOnly: b.readOnly };
  }

  bookie(id: string): MemoryBookie {
    const b = this.pool.bookies.get(id);
    if (!b) throw new Error(`no bookie ${id}`);
    return b;
  }

  /** Unregister a bookie (it stays reachable until crashed). */
  unregister(id: string): void {
    this.directory.bookies = this.directory.bookies.filter((b) => b.bookieId !== id);
  }

  client(opts: Partial<LedgerClientOptions> = {}): BookKeeperClient {
    const c = new BookKeeperClient({
      metadata: this.metadata,
      directory: this.directory,
      pool: this.pool,
      speculativeTimeoutMs: 50,
      recoveryTimeoutMs: 5000,
      ...opts,
    });
    this.clients.push(c);
    return c;
  }

  async stop(): Promise<void> {
    for (const c of this.clients) await c.close();
    await this.metadata.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
