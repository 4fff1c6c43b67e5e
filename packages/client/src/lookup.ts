import type * as grpc from '@grpc/grpc-js';
import { fromGrpcError, retry, type SluiceError } from '@sluice/common';
import type { GetTopicMetadataResponse__Output, LookupResponse__Output } from '@sluice/proto';
import type { ConnectionPool } from './connection-pool.js';
import { ownerHint } from './reconnect-policy.js';
import { unary } from './unary.js';

/** Finds the owner of a topic through the service URL's broker (LookupService). */
export class TopicLookup {
  constructor(
    private readonly pool: ConnectionPool,
    private readonly serviceAddress: string,
    private readonly timeoutMs: number,
  ) {}

  /** `host:port` of the broker that owns `topic`. */
  async owner(topic: string): Promise<string> {
    const conn = this.pool.get(this.serviceAddress);
    const res = await unary<{ topic: string }, LookupResponse__Output>(
      conn.lookup,
      conn.lookup.Lookup,
      { topic },
      this.timeoutMs,
    );
    // A broker that advertises no address means "dial me as you reached me".
    return res.brokerAddress || this.serviceAddress;
  }

  /** Partition count of `topic` (0 when not partitioned). */
  async partitions(topic: string): Promise<number> {
    return retry(
      async () => {
        const conn = this.pool.get(this.serviceAddress);
        const res = await unary<{ topic: string }, GetTopicMetadataResponse__Output>(
          conn.lookup,
          conn.lookup.GetTopicMetadata,
          { topic },
          this.timeoutMs,
        );
        return res.partitions;
      },
      { retries: 5, maxDelayMs: 1000 },
    );
  }
}

/**
 * Connect to whichever broker owns `topic`: look it up, try it, and follow a
 * FAILED_PRECONDITION redirect ("sluice-owner") straight to the named owner on
 * the next attempt. `attempt` errors are mapped to typed Sluice errors.
 */
export async function connectToOwner<T>(
  lookup: TopicLookup,
  topic: string,
  attempt: (address: string) => Promise<T>,
  opts: {
    shouldRetry: (err: SluiceError) => boolean;
    retries?: number;
    deadlineMs?: number;
    signal?: AbortSignal;
    onRetry?: (err: SluiceError, attempt: number, delayMs: number) => void;
  },
): Promise<T> {
  let hint: string | undefined;
  return retry(
    async () => {
      const address = hint ?? (await lookup.owner(topic));
      hint = undefined;
      try {
        return await attempt(address);
      } catch (err) {
        const e = fromGrpcError(err);
        hint = ownerHint(e);
        throw e;
      }
    },
    {
      retries: opts.retries ?? Number.POSITIVE_INFINITY,
      minDelayMs: 50,
      maxDelayMs: 3000,
      ...(opts.deadlineMs === undefined ? {} : { deadlineMs: opts.deadlineMs }),
      ...(opts.signal ? { signal: opts.signal } : {}),
      shouldRetry: (err) => !opts.signal?.aborted && opts.shouldRetry(fromGrpcError(err)),
      onRetry: (err, n, delay) => opts.onRetry?.(fromGrpcError(err), n, delay),
    },
  );
}

/** Half-close a stream and give the broker a moment to finish it before cancelling. */
export function endCall<Req, Res>(call: grpc.ClientDuplexStream<Req, Res>): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      call.cancel();
      resolve();
    }, 1000);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    call.on('status', done);
    call.on('error', done);
    call.end();
  });
}
