/**
 * Which bookies exist, where they listen and whether they take writes. The
 * metadata implementation reads the ephemeral registrations bookies keep
 * under `bookies/available/` and `bookies/readonly/`.
 */
import type { BookieId } from '@sluice/common';
import type { MetadataStore } from '@sluice/metadata';

export interface BookieInfo {
  bookieId: BookieId;
  /** host:port of the bookie's gRPC server. */
  address: string;
  /** host:port of the bookie's add channel, when it has one. */
  addAddress?: string;
  /** Failure-domain label; placement spreads a write set across racks. */
  rack?: string;
  /** Read-only bookies serve reads but take no new ensembles. */
  readOnly: boolean;
}

export interface BookieDirectory {
  /** Every registered bookie, writable and read-only. */
  list(): Promise<BookieInfo[]>;
}

export const BOOKIES_AVAILABLE_PREFIX = 'bookies/available/';
export const BOOKIES_READONLY_PREFIX = 'bookies/readonly/';

interface Registration {
  address?: string;
  addAddress?: string;
  rack?: string;
}

export class MetadataBookieDirectory implements BookieDirectory {
  private cached: { at: number; bookies: BookieInfo[] } | undefined;

  /** `cacheMs` bounds how stale a listing may be (registrations change rarely). */
  constructor(
    private readonly store: MetadataStore,
    private readonly cacheMs = 1000,
  ) {}

  async list(): Promise<BookieInfo[]> {
    if (this.cached && Date.now() - this.cached.at < this.cacheMs) return this.cached.bookies;
    const [writable, readOnly] = await Promise.all([
      this.store.listAll(BOOKIES_AVAILABLE_PREFIX),
      this.store.listAll(BOOKIES_READONLY_PREFIX),
    ]);
    const byId = new Map<BookieId, BookieInfo>();
    const add = (key: string, value: Buffer, prefix: string, ro: boolean) => {
      const bookieId = key.slice(key.indexOf(prefix) + prefix.length);
      let reg: Registration;
      try {
        reg = JSON.parse(value.toString('utf8')) as Registration;
      } catch {
        return;
      }
      if (!reg.address) return;
      // A bookie listed in both places is mid-transition; read-only wins.
      const prev = byId.get(bookieId);
      if (prev?.readOnly) return;
      byId.set(bookieId, {
        bookieId,
        address: reg.address,
        ...(typeof reg.addAddress === 'string' && reg.addAddress ? { addAddress: reg.addAddress } : {}),
        readOnly: ro,
        ...(reg.rack ? { rack: reg.rack } : {}),
      });
    };
    for (const v of writable) add(v.key, v.value, BOOKIES_AVAILABLE_PREFIX, false);
    for (const v of readOnly) add(v.key, v.value, BOOKIES_READONLY_PREFIX, true);
    const bookies = [...byId.values()].sort((a, b) => a.bookieId.localeCompare(b.bookieId));
    this.cached = { at: Date.now(), bookies };
    return bookies;
  }

  /** Forget the cached listing (after a bookie failed). */
  invalidate(): void {
    this.cached = undefined;
  }
}

/** A fixed listing (tests, in-process setups). */
export class StaticBookieDirectory implements BookieDirectory {
  constructor(public bookies: BookieInfo[]) {}
  async list(): Promise<BookieInfo[]> {
    return this.bookies;
  }
}
