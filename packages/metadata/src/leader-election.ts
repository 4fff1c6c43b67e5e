import { ClosedError, InvalidArgumentError, SessionLostError } from '@sluice/common';
import { checkKey } from './limits.js';
import type { LeaderElection, MetadataStore, Session, Versioned } from './metadata-store.js';

/**
 * Leader election on the session's own lease: each candidate writes one
 * ephemeral key `<prefix><sessionId>`; the candidate with the lowest create
 * revision leads, every other one waits for the deletion of the candidate
 * just ahead of it (no thundering herd). A leader's key vanishes with its
 * session, so failover happens within the session TTL.
 */
export class SessionLeaderElection implements LeaderElection {
  private readonly key: string;
  private leading = false;
  private ctl: AbortController | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly store: MetadataStore,
    private readonly session: Session,
    /** Candidates' keys live under this prefix, e.g. `elections/load-manager/`. */
    private readonly prefix: string,
  ) {
    checkKey(prefix);
    if (!prefix.endsWith('/')) {
      throw new InvalidArgumentError(
        `election prefix "${prefix}" must end with "/" so that elections never mix`,
      );
    }
    this.key = `${prefix}${session.id}`;
    session.onLost((err) => {
      this.leading = false;
      this.ctl?.abort(err);
    });
  }

  get isLeader(): boolean {
    return this.leading && !this.session.lost;
  }

  campaign(value: Buffer): Promise<void> {
    if (this.running)
      return Promise.reject(new InvalidArgumentError('campaign() is already running on this election'));
    if (this.session.lost) {
      return Promise.reject(new SessionLostError(`session ${this.session.id} is lost; create a new session`));
    }
    const ctl = new AbortController();
    this.ctl = ctl;
    const p = this.runCampaign(value, ctl.signal).finally(() => {
      this.ctl = undefined;
      this.running = undefined;
    });
    this.running = p.catch(() => undefined);
    return p;
  }

  async leader(): Promise<Buffer | undefined> {
    return lowest(await this.store.listAll(this.prefix))?.value;
  }

  async resign(): Promise<void> {
    this.leading = false;
    if (this.running) {
      this.ctl?.abort(new ClosedError('campaign cancelled by resign()'));
      await this.running;
      return;
    }
    await this.withdraw();
  }

  private async runCampaign(value: Buffer, signal: AbortSignal): Promise<void> {
    try {
      await this.run(value, signal);
      signal.throwIfAborted();
      this.leading = true;
    } catch (err) {
      if (!this.session.lost) await this.withdraw().catch(() => undefined);
      throw signal.aborted ? signal.reason : err;
    }
  }

  private async withdraw(): Promise<void> {
    const mine = await this.store.get(this.key);
    if (mine) await this.store.delete(this.key, { expectedVersion: mine.version }).catch(() => undefined);
  }

  private async run(value: Buffer, signal: AbortSignal): Promise<void> {
    const existing = await this.store.get(this.key);
    // Re-campaigning with the same session keeps our place in line.
    if (existing)
      await this.store.put(this.key, value, { expectedVersion: existing.version, session: this.session });
    else await this.store.put(this.key, value, { createOnly: true, session: this.session });
    for (;;) {
      signal.throwIfAborted();
      const mine = await this.store.get(this.key);
      if (!mine) throw new SessionLostError(`election key ${this.key} vanished; the session ended`);
      const rev = await this.store.revision();
      const candidates = await this.store.listAll(this.prefix, { keysOnly: true });
      let predecessor: Versioned | undefined;
      for (const c of candidates) {
        if (
          c.createRevision < mine.createRevision &&
          (!predecessor || c.createRevision > predecessor.createRevision)
        ) {
          predecessor = c;
        }
      }
      if (!predecessor) return;
      await this.waitForDeletion(predecessor.key, rev + 1, signal);
    }
  }

  private async waitForDeletion(key: string, fromRevision: number, signal: AbortSignal): Promise<void> {
    let onAbort: () => void = () => undefined;
    const gone = new Promise<void>((resolve, reject) => {
      onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      this.store
        .watch(
          key,
          (ev) => {
            if (ev.key === key && ev.type === 'delete') resolve();
          },
          { fromRevision, onError: reject },
        )
        .then((w) => {
          // Close the watch whichever way the wait ends.
          gone.finally(() => w.close()).catch(() => undefined);
          // The key may have gone before `fromRevision` was pinned.
          return this.store.get(key).then((still) => {
            if (!still) resolve();
          });
        })
        .catch(reject);
    });
    try {
      await gone;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }
}

function lowest(items: Versioned[]): Versioned | undefined {
  let best: Versioned | undefined;
  for (const it of items) if (!best || it.createRevision < best.createRevision) best = it;
  return best;
}
