/**
 * LedgerMetadata in the metadata store under `ledgers/<ledgerId>` as JSON,
 * every change a compare-and-swap on the key's version.
 */
import {
  BadVersionError,
  backoffDelay,
  InvalidArgumentError,
  type LedgerId,
  NotFoundError,
} from '@sluice/common';
import type { MetadataStore } from '@sluice/metadata';
import type { LedgerMetadata, LedgerSegment } from './api.js';

export const LEDGERS_PREFIX = 'ledgers/';

export function ledgerKey(ledgerId: LedgerId): string {
  return `${LEDGERS_PREFIX}${ledgerId}`;
}

export interface VersionedMetadata {
  metadata: LedgerMetadata;
  version: number;
}

export function validateQuorums(ensembleSize: number, writeQuorum: number, ackQuorum: number): void {
  const ok =
    Number.isInteger(ensembleSize) &&
    Number.isInteger(writeQuorum) &&
    Number.isInteger(ackQuorum) &&
    ackQuorum >= 1 &&
    writeQuorum >= ackQuorum &&
    ensembleSize >= writeQuorum;
  if (!ok) {
    throw new InvalidArgumentError(
      `ensemble ${ensembleSize}, write quorum ${writeQuorum}, ack quorum ${ackQuorum} are invalid; they must be integers with E >= Qw >= Qa >= 1`,
    );
  }
}

export function encodeMetadata(m: LedgerMetadata): Buffer {
  return Buffer.from(JSON.stringify(m));
}

export function decodeMetadata(value: Buffer): LedgerMetadata {
  return JSON.parse(value.toString('utf8')) as LedgerMetadata;
}

/** The segment holding `entryId` (segments are ordered by firstEntryId). */
export function segmentFor(m: LedgerMetadata, entryId: number): LedgerSegment {
  let found = m.segments[0] as LedgerSegment;
  for (const s of m.segments) {
    if (s.firstEntryId <= entryId) found = s;
    else break;
  }
  return found;
}

/** Bookies of the write set of `entryId` within `ensemble`, in striping order. */
export function writeSet(ensemble: readonly string[], writeQuorum: number, entryId: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < writeQuorum; i++) out.push(ensemble[(entryId + i) % ensemble.length] as string);
  return out;
}

export class LedgerMetadataStore {
  constructor(readonly store: MetadataStore) {}

  async read(ledgerId: LedgerId): Promise<VersionedMetadata | undefined> {
    const v = await this.store.get(ledgerKey(ledgerId));
    return v ? { metadata: decodeMetadata(v.value), version: v.version } : undefined;
  }

  async readOrThrow(ledgerId: LedgerId): Promise<VersionedMetadata> {
    const v = await this.read(ledgerId);
    if (!v) throw new NotFoundError(`ledger ${ledgerId} does not exist (it may have been deleted)`);
    return v;
  }

  async create(m: LedgerMetadata): Promise<VersionedMetadata> {
    const version = await this.store.put(ledgerKey(m.ledgerId), encodeMetadata(m), { createOnly: true });
    return { metadata: m, version };
  }

  /** CAS; throws BadVersionError when someone else changed the ledger first. */
  async write(m: LedgerMetadata, expectedVersion: number): Promise<VersionedMetadata> {
    const version = await this.store.put(ledgerKey(m.ledgerId), encodeMetadata(m), { expectedVersion });
    return { metadata: m, version };
  }

  /**
   * Read-modify-CAS until it sticks. `change` returns the new metadata, or
   * undefined when no change is needed any more.
   */
  async update(
    ledgerId: LedgerId,
    change: (current: LedgerMetadata) => LedgerMetadata | undefined,
    attempts = 20,
  ): Promise<VersionedMetadata> {
    for (let i = 0; ; i++) {
      const cur = await this.readOrThrow(ledgerId);
      const next = change(cur.metadata);
      if (!next) return cur;
      try {
        return await this.write(next, cur.version);
      } catch (err) {
        if (!(err instanceof BadVersionError) || i >= attempts) throw err;
        // Contending writers (writer, recovery, auditor) must not re-collide in lockstep.
        await new Promise((resolve) =>
          setTimeout(resolve, backoffDelay(i, { minDelayMs: 10, maxDelayMs: 1000 })),
        );
      }
    }
  }

  async delete(ledgerId: LedgerId): Promise<void> {
    await this.store.delete(ledgerKey(ledgerId));
  }
}
