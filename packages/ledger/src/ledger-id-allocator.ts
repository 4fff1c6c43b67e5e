/**
 * Ledger ids come from `idgen/ledgers` in ranges: one CAS reserves a block
 * (1000 ids by default) that this process hands out locally. Ids of a block
 * that a crashed process never used are simply skipped.
 *
 * Ids are unique, and along one log they must also rise: positions compare
 * by ledger id first. Blocks of two processes interleave (a broker that
 * owned a topic, lost it and got it back still holds ids below those its
 * successor used), so `nextId(above)` drops what is left of the local
 * block when it is not above the log's newest ledger and reserves a fresh
 * one, which lies above every id handed out so far.
 */
import { AlreadyExistsError, BadVersionError, type LedgerId, retry, UnavailableError } from '@sluice/common';
import type { MetadataStore } from '@sluice/metadata';

export const LEDGER_IDGEN_KEY = 'idgen/ledgers';

export class LedgerIdAllocator {
  private next = 0;
  private end = 0;
  private reserving: Promise<void> | undefined;

  constructor(
    private readonly store: MetadataStore,
    private readonly blockSize = 1000,
  ) {}

  /** A new id, unique and greater than `above` (a log's newest ledger id; 0 for none). */
  async nextId(above: LedgerId = 0): Promise<LedgerId> {
    let fresh = false;
    while (this.next >= this.end || this.next <= above) {
      if (fresh && this.end - 1 <= above) {
        throw new UnavailableError(
          `ledger id counter at ${this.end} is not above ledger ${above}; '${LEDGER_IDGEN_KEY}' in metadata was reset`,
        );
      }
      // The rest of this block lies below the log's newest ledger.
      if (this.next <= above) this.next = this.end;
      this.reserving ??= this.reserve().finally(() => {
        this.reserving = undefined;
      });
      await this.reserving;
      fresh = true;
    }
    return this.next++;
  }

  private async reserve(): Promise<void> {
    await retry(
      async () => {
        const cur = await this.store.get(LEDGER_IDGEN_KEY);
        // Ids start at 1 so that 0 never looks like an unset field on the wire.
        const start = cur ? (JSON.parse(cur.value.toString('utf8')) as { next: number }).next : 1;
        const end = start + this.blockSize;
        if (!Number.isSafeInteger(end)) throw new UnavailableError('ledger id space is exhausted');
        const value = Buffer.from(JSON.stringify({ next: end }));
        if (cur) await this.store.put(LEDGER_IDGEN_KEY, value, { expectedVersion: cur.version });
        else await this.store.put(LEDGER_IDGEN_KEY, value, { createOnly: true });
        this.next = start;
        this.end = end;
      },
      {
        retries: 20,
        minDelayMs: 5,
        maxDelayMs: 200,
        shouldRetry: (err) => err instanceof BadVersionError || err instanceof AlreadyExistsError,
      },
    );
  }
}
