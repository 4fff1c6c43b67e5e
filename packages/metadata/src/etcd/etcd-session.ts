import { backoffDelay, type Logger, SessionLostError } from '@sluice/common';
import type { IDuplexStream, ILeaseKeepAliveRequest, ILeaseKeepAliveResponse, LeaseClient } from 'etcd3';
import type { Session } from '../metadata-store.js';

type State = 'alive' | 'lost' | 'closed';

/**
 * One etcd lease kept alive by this process. Each keepalive that etcd answers
 * moves the lease's expiry to (time the request was sent + granted TTL), a
 * lower bound of what etcd itself computes; a watchdog declares the session
 * lost the moment that expiry passes without a newer answer. That is the
 * latest point at which etcd may already have dropped our ephemeral keys, so
 * anything relying on them (ownership, leadership) must stop there.
 */
export class EtcdSession implements Session {
  private state: State = 'alive';
  private readonly listeners: ((err: Error) => void)[] = [];
  private expiresAt: number;
  private stream: IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse> | undefined;
  private opening = false;
  /** Send times of keepalives awaiting an answer on the current stream (FIFO). */
  private inFlight: number[] = [];
  private readonly tickTimer: NodeJS.Timeout;
  private watchdog: NodeJS.Timeout | undefined;
  private failures = 0;

  constructor(
    readonly id: string,
    readonly ttlMs: number,
    grantedAt: number,
    grantedTtlSec: number,
    private readonly leases: LeaseClient,
    private readonly revoke: (id: string) => Promise<void>,
    private readonly logger: Logger,
  ) {
    this.expiresAt = grantedAt + grantedTtlSec * 1000;
    this.armWatchdog();
    this.tickTimer = setInterval(() => this.tick(), Math.max(200, Math.floor(ttlMs / 3)));
    this.tickTimer.unref();
  }

  get lost(): boolean {
    return this.state === 'lost';
  }

  onLost(listener: (err: Error) => void): void {
    this.listeners.push(listener);
  }

  /** Revoke the lease so every ephemeral key goes now rather than at TTL. */
  async close(): Promise<void> {
    if (this.state !== 'alive') return;
    this.state = 'closed';
    this.stop();
    try {
      await this.revoke(this.id);
    } catch (err) {
      // Unreachable etcd: the lease still expires on its own within the TTL.
      this.logger.warn({ err, session: this.id }, 'could not revoke metadata session; it will expire by TTL');
    }
  }

  /** Store shutdown: stop renewing without revoking (the caller decides). */
  detach(): void {
    if (this.state === 'alive') this.state = 'closed';
    this.stop();
  }

  private tick(): void {
    if (this.state !== 'alive') return;
    if (!this.stream) {
      this.open();
      return;
    }
    this.inFlight.push(Date.now());
    this.stream.write({ ID: this.id });
  }

  private open(): void {
    if (this.opening) return;
    this.opening = true;
    this.leases
      .leaseKeepAlive()
      .then((stream) => {
        this.opening = false;
        if (this.state !== 'alive') {
          stream.end();
          return;
        }
        this.stream = stream;
        this.inFlight = [];
        stream.on('data', (res: ILeaseKeepAliveResponse) => this.onResponse(stream, res));
        stream.on('error', (err: Error) => this.dropStream(stream, err));
        stream.on('end', () => this.dropStream(stream, new Error('keepalive stream ended')));
        this.tick();
      })
      .catch((err: unknown) => {
        this.opening = false;
        this.failures++;
        this.logger.debug({ err, session: this.id }, 'lease keepalive stream could not open');
        // Retry sooner than the next tick, but never in a tight loop.
        const t = setTimeout(
          () => this.tick(),
          Math.min(backoffDelay(this.failures, { maxDelayMs: 1000 }), this.ttlMs / 3),
        );
        t.unref();
      });
  }

  private onResponse(
    stream: IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>,
    res: ILeaseKeepAliveResponse,
  ): void {
    if (stream !== this.stream || this.state !== 'alive') return;
    const sentAt = this.inFlight.shift() ?? Date.now();
    const ttl = Number(res.TTL);
    if (!(ttl > 0)) {
      this.markLost(
        new SessionLostError(`session ${this.id}: etcd says the lease expired; create a new session`),
      );
      return;
    }
    this.failures = 0;
    this.expiresAt = Math.max(this.expiresAt, sentAt + ttl * 1000);
    this.armWatchdog();
  }

  private dropStream(
    stream: IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>,
    err: Error,
  ): void {
    if (stream !== this.stream) return;
    this.stream = undefined;
    this.inFlight = [];
    this.failures++;
    this.logger.debug({ err: err.message, session: this.id }, 'lease keepalive stream broke; reopening');
    try {
      stream.end();
    } catch {
      // Already torn down by grpc.
    }
  }

  private armWatchdog(): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = setTimeout(
      () => {
        if (Date.now() >= this.expiresAt) {
          this.markLost(
            new SessionLostError(
              `session ${this.id}: etcd could not be reached to renew the lease within its TTL (${this.ttlMs} ms); ephemeral keys may be gone`,
            ),
          );
        } else {
          this.armWatchdog();
        }
      },
      Math.max(0, this.expiresAt - Date.now()),
    );
    this.watchdog.unref();
  }

  private markLost(err: Error): void {
    if (this.state !== 'alive') return;
    this.state = 'lost';
    this.stop();
    this.logger.warn({ session: this.id }, err.message);
    // If etcd is back, make sure the keys go now instead of lingering on a
    // lease that etcd extended across its own restart.
    this.revoke(this.id).catch(() => undefined);
    for (const l of this.listeners.splice(0)) {
      try {
        l(err);
      } catch (e) {
        this.logger.error({ err: e }, 'session lost listener threw');
      }
    }
  }

  private stop(): void {
    clearInterval(this.tickTimer);
    if (this.watchdog) clearTimeout(this.watchdog);
    const s = this.stream;
    this.stream = undefined;
    if (s) {
      try {
        s.cancel();
      } catch {
        // Already closed.
      }
    }
  }
}
