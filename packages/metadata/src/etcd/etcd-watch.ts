import { backoffDelay, type Logger, UnavailableError } from '@sluice/common';
import type { IDuplexStream, IWatchRequest, IWatchResponse, WatchClient } from 'etcd3';
import { CompactedError } from '../limits.js';
import type { Watch, WatchEvent } from '../metadata-store.js';
import type { KeySpace } from './etcd-keys.js';

type Stream = IDuplexStream<IWatchRequest, IWatchResponse>;

/**
 * A prefix watch on its own gRPC stream. It remembers the next revision it
 * owes the listener and, after any disconnect, re-creates the etcd watcher
 * from exactly that revision: no gaps, no duplicates. (etcd3's Watcher resumes
 * from the response header's revision, which can run ahead of the events
 * actually delivered while a watcher catches up on history.) Progress
 * notifications move that revision forward while the prefix is quiet, so a
 * resumed watch asks only for recent history, which compaction has not
 * removed as long as the notify interval is shorter than the compaction
 * retention.
 */
export class EtcdWatch implements Watch {
  private nextRevision: number;
  private stream: Stream | undefined;
  private closed = false;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private started: { resolve: () => void; reject: (err: Error) => void } | undefined;

  constructor(
    private readonly client: WatchClient,
    private readonly keys: KeySpace,
    private readonly prefix: string,
    fromRevision: number,
    private readonly listener: (ev: WatchEvent) => void,
    private readonly onError: ((err: Error) => void) | undefined,
    private readonly logger: Logger,
    private readonly onClosed: (w: EtcdWatch) => void,
  ) {
    this.nextRevision = fromRevision;
  }

  /** Resolves once etcd has created the watcher (changes from now on are seen). */
  start(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.started = undefined;
        void this.close();
        reject(
          new UnavailableError(
            `watch on "${this.prefix}" was not established within ${timeoutMs} ms; check that etcd is reachable`,
          ),
        );
      }, timeoutMs);
      this.started = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      this.connect();
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const s = this.stream;
    this.stream = undefined;
    s?.cancel();
    this.onClosed(this);
  }

  /** Store shutdown. */
  fail(err: Error): void {
    if (this.closed) return;
    void this.close();
    this.onError?.(err);
  }

  private connect(): void {
    if (this.closed) return;
    this.client
      .watch()
      .then((stream) => {
        if (this.closed) {
          stream.cancel();
          return;
        }
        this.stream = stream;
        stream.on('data', (res: IWatchResponse) => this.onResponse(stream, res));
        stream.on('error', (err: Error) => this.onBroken(stream, err));
        stream.on('end', () => this.onBroken(stream, new Error('watch stream ended')));
        stream.write({
          create_request: {
            ...this.keys.range(this.prefix),
            start_revision: this.nextRevision,
            // While the prefix is quiet etcd then sends an empty response
            // with the current revision (every
            // --experimental-watch-progress-notify-interval, 10 min by
            // default). Without it the resume point stays where the watch
            // started, and once compaction passes it any reconnect fails
            // with CompactedError although no event was ever missed.
            progress_notify: true,
          },
        });
      })
      .catch((err: unknown) => this.onBroken(undefined, err instanceof Error ? err : new Error(String(err))));
  }

  private onResponse(stream: Stream, res: IWatchResponse): void {
    if (stream !== this.stream || this.closed) return;
    if (res.canceled) {
      const compact = Number(res.compact_revision);
      const err =
        compact > 0
          ? new CompactedError(this.nextRevision, compact)
          : new UnavailableError(
              `etcd cancelled the watch on "${this.prefix}": ${res.cancel_reason || 'no reason given'}`,
            );
      if (this.started) {
        this.started.reject(err);
        this.started = undefined;
        void this.close();
      } else {
        this.fail(err);
      }
      return;
    }
    if (res.created) {
      this.failures = 0;
      this.started?.resolve();
      this.started = undefined;
      // The header is the store's revision, not this watcher's progress: a
      // watcher created on older history has yet to replay it.
      return;
    }
    if (res.events.length === 0) {
      // A progress notification. etcd sends it only to a watcher in sync,
      // through the same queue as events: every change up to the header
      // revision has been delivered.
      this.nextRevision = Math.max(this.nextRevision, Number(res.header.revision) + 1);
      return;
    }
    let maxRevision = 0;
    for (const ev of res.events) {
      const revision = Number(ev.kv.mod_revision);
      // Anything below nextRevision was delivered before a reconnect.
      if (revision < this.nextRevision) continue;
      maxRevision = Math.max(maxRevision, revision);
      const key = this.keys.unkey(ev.kv.key);
      const out: WatchEvent =
        ev.type === 'Put'
          ? { type: 'put', key, value: ev.kv.value, version: revision }
          : { type: 'delete', key, version: revision };
      try {
        this.listener(out);
      } catch (err) {
        setImmediate(() => {
          throw err;
        });
      }
      if (this.closed) return;
    }
    // etcd never splits one revision's events across responses (fragmenting
    // is off). The header revision is not used here: while a watcher catches
    // up on history etcd stamps each batch with the store's current revision.
    if (maxRevision > 0) this.nextRevision = maxRevision + 1;
  }

  private onBroken(stream: Stream | undefined, err: Error): void {
    if (this.closed || (stream !== undefined && stream !== this.stream)) return;
    this.stream = undefined;
    stream?.cancel();
    this.failures++;
    const delay = backoffDelay(this.failures - 1, { maxDelayMs: 2000 });
    this.logger.debug(
      { prefix: this.prefix, err: err.message, delay, from: this.nextRevision },
      'watch broke; resuming',
    );
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.connect();
    }, delay);
  }
}
