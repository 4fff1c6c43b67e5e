/**
 * Where a ledger's copies go. Rules, in order: only writable bookies; never
 * the same bookie twice in an ensemble (so never twice in a write set);
 * spread across racks so that losing one rack loses as few copies of an
 * entry as possible. Within those rules the choice is random, which spreads
 * load and keeps a failed bookie's ledgers from piling onto one replacement.
 */
import { type BookieId, UnavailableError } from '@sluice/common';
import type { BookieInfo } from './bookie-directory.js';

export interface PlacementPolicy {
  /** Pick `ensembleSize` distinct writable bookies. Throws UnavailableError when too few exist. */
  newEnsemble(ensembleSize: number, bookies: BookieInfo[], exclude?: ReadonlySet<BookieId>): BookieId[];
  /**
   * Pick a writable bookie to take position `index` of `ensemble`, distinct
   * from every other member and from `exclude`.
   */
  replaceBookie(
    ensemble: readonly BookieId[],
    index: number,
    bookies: BookieInfo[],
    exclude?: ReadonlySet<BookieId>,
  ): BookieId;
}

const NO_RACK = '';

export class RackAwarePlacementPolicy implements PlacementPolicy {
  constructor(private readonly random: () => number = Math.random) {}

  newEnsemble(
    ensembleSize: number,
    bookies: BookieInfo[],
    exclude: ReadonlySet<BookieId> = new Set(),
  ): BookieId[] {
    const candidates = this.writable(bookies, exclude);
    if (candidates.length < ensembleSize) {
      throw new UnavailableError(
        `need ${ensembleSize} writable bookies for the ensemble but only ${candidates.length} are available; start more bookies or lower the ensemble size`,
      );
    }
    const chosen: BookieInfo[] = [];
    const rackUse = new Map<string, number>();
    let pool = this.shuffle(candidates);
    while (chosen.length < ensembleSize) {
      const pick = this.leastUsedRack(pool, rackUse);
      chosen.push(pick);
      pool = pool.filter((b) => b !== pick);
      const rack = pick.rack ?? NO_RACK;
      rackUse.set(rack, (rackUse.get(rack) ?? 0) + 1);
    }
    return chosen.map((b) => b.bookieId);
  }

  replaceBookie(
    ensemble: readonly BookieId[],
    index: number,
    bookies: BookieInfo[],
    exclude: ReadonlySet<BookieId> = new Set(),
  ): BookieId {
    const members = new Set(ensemble);
    const all = new Set([...exclude, ...members]);
    const candidates = this.shuffle(this.writable(bookies, all));
    if (candidates.length === 0) {
      throw new UnavailableError(
        `no writable bookie outside the ensemble [${ensemble.join(', ')}] can replace ${ensemble[index]}; start another bookie`,
      );
    }
    const rackOf = new Map(bookies.map((b) => [b.bookieId, b.rack ?? NO_RACK]));
    const rackUse = new Map<string, number>();
    ensemble.forEach((id, i) => {
      if (i === index) return;
      const rack = rackOf.get(id) ?? NO_RACK;
      rackUse.set(rack, (rackUse.get(rack) ?? 0) + 1);
    });
    return this.leastUsedRack(candidates, rackUse).bookieId;
  }

  private writable(bookies: BookieInfo[], exclude: ReadonlySet<BookieId>): BookieInfo[] {
    const seen = new Set<BookieId>();
    return bookies.filter((b) => {
      if (b.readOnly || exclude.has(b.bookieId) || seen.has(b.bookieId)) return false;
      seen.add(b.bookieId);
      return true;
    });
  }

  /** The first candidate (pool is shuffled) whose rack holds the fewest chosen bookies. */
  private leastUsedRack(pool: BookieInfo[], rackUse: Map<string, number>): BookieInfo {
    let best = pool[0] as BookieInfo;
    let bestUse = Number.POSITIVE_INFINITY;
    for (const b of pool) {
      const use = rackUse.get(b.rack ?? NO_RACK) ?? 0;
      if (use < bestUse) {
        best = b;
        bestUse = use;
      }
    }
    return best;
  }

  private shuffle<T>(items: T[]): T[] {
    const a = [...items];
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1));
      [a[i], a[j]] = [a[j] as T, a[i] as T];
    }
    return a;
  }
}
