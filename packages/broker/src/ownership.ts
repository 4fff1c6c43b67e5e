import { AlreadyExistsError, NotOwnerError, UnavailableError } from '@sluice/common';
import type { MetadataStore, Session } from '@sluice/metadata';

/** Value of `ownership/<tenant>/<ns>/<bundle>`, an ephemeral key on the owner's session. */
export interface OwnerRecord {
  brokerId: string;
  address: string;
  httpAddress: string;
  /** Session (lease) id the key lives on: a key of an older session of the same broker is not ours. */
  sessionId: string;
  acquiredAt: number;
}

export interface SelfIdentity {
  brokerId: string;
  address: string;
  httpAddress: string;
}

/**
 * Bundle ownership. The create-only put of the ephemeral key is the only
 * thing that decides an owner, so concurrent acquirers can never both win;
 * the loser learns the winner and redirects.
 */
export class Ownership {
  private readonly owned = new Map<string, OwnerRecord>();
  private session: Session | undefined;

  constructor(
    private readonly store: MetadataStore,
    private readonly self: SelfIdentity,
  ) {}

  /** Ownership lives on this session from now on (after registration or re-registration). */
  useSession(session: Session | undefined): void {
    this.session = session;
    this.owned.clear();
  }

  owns(key: string): boolean {
    return this.owned.has(key);
  }

  ownedKeys(): string[] {
    return [...this.owned.keys()];
  }

  async read(key: string): Promise<OwnerRecord | undefined> {
    const v = await this.store.get(key);
    if (!v) return undefined;
    try {
      return JSON.parse(v.value.toString('utf8')) as OwnerRecord;
    } catch {
      return undefined;
    }
  }

  /** Make this broker the owner of `key`, or throw NotOwnerError naming the owner. */
  async ensureOwned(key: string): Promise<void> {
    if (this.owned.has(key)) return;
    const session = this.session;
    if (!session || session.lost) {
      throw new UnavailableError('this broker has no live metadata session; retry on another broker', {
        details: { owner: '' },
      });
    }
    const existing = await this.read(key);
    if (existing) {
      if (existing.brokerId === this.self.brokerId && existing.sessionId === session.id) {
        this.owned.set(key, existing);
        return;
      }
      throw this.notOwner(key, existing);
    }
    const record: OwnerRecord = { ...this.self, sessionId: session.id, acquiredAt: Date.now() };
    try {
      await this.store.put(key, Buffer.from(JSON.stringify(record)), { createOnly: true, session });
    } catch (err) {
      if (!(err instanceof AlreadyExistsError)) throw err;
      const winner = await this.read(key);
      throw this.notOwner(key, winner);
    }
    if (this.session !== session || session.lost) {
      throw new UnavailableError('the metadata session ended while acquiring ownership; look up again');
    }
    this.owned.set(key, record);
  }

  /** Give up a bundle (unload / shutdown). */
  async release(key: string): Promise<void> {
    const mine = this.owned.get(key);
    this.owned.delete(key);
    if (!mine) return;
    const v = await this.store.get(key);
    if (v) {
      const rec = JSON.parse(v.value.toString('utf8')) as OwnerRecord;
      if (rec.brokerId === this.self.brokerId && rec.sessionId === mine.sessionId) {
        await this.store.delete(key, { expectedVersion: v.version }).catch(() => undefined);
      }
    }
  }

  private notOwner(key: string, owner: OwnerRecord | undefined): NotOwnerError {
    const bundle = key.slice('ownership/'.length);
    return owner
      ? new NotOwnerError(
          `bundle ${bundle} is served by broker ${owner.brokerId} at ${owner.address}; send the call there`,
          {
            details: { owner: owner.address },
          },
        )
      : new NotOwnerError(
          `bundle ${bundle} is changing owner; look the topic up again after a short backoff`,
          {
            details: { owner: '' },
          },
        );
  }
}
