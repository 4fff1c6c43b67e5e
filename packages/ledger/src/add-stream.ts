/**
 * What the ledger client needs of an AddEntries stream to one bookie,
 * whichever transport carries it: the bookie's add channel (plain TCP,
 * `AddChannelConnection`) or a gRPC call over HTTP/2 (`AddStreamConnection`).
 */
import { status as grpcStatus, type Metadata } from '@grpc/grpc-js';
import { fromGrpcError, type SluiceError, UnavailableError } from '@sluice/common';
import type { DecodedAddEntriesResponse } from '@sluice/proto';
import type { AddBatch } from './add-request-encoder.js';

export interface AddStreamHandlers {
  /** A response: results of adds sent on this stream. */
  response(res: DecodedAddEntriesResponse): void;
  /** The stream is over (the bookie ended it, it broke, or a response was malformed); called once. */
  broken(err: SluiceError): void;
  /** The bookie ended the call with OK after `end()` (then `broken` is not called). */
  ended?(): void;
}

export interface AddStream {
  /**
   * Send one request; false once the transport holds more than its
   * high-water mark (wait for `onDrain`). The Buffers are referenced until
   * written: nobody may change them before their adds settle.
   */
  write(batch: AddBatch): boolean;
  /** No more requests: the bookie answers what it has, then ends the call. */
  end(): void;
  onDrain(fn: () => void): void;
  /** End the call from this side; `broken` is not called for it. */
  cancel(): void;
}

/** Opens add streams to one bookie. */
export interface AddStreamOpener {
  /** Open a stream; throws UnavailableError when the transport refuses to start one. */
  open(handlers: AddStreamHandlers): AddStream;
  /** Drop the connection (its streams break); the next `open` connects again. */
  reset(): void;
  close(): void;
}

/** Keepalive of every connection to a bookie (add connections and the grpc-js channel). */
export const BOOKIE_KEEPALIVE_MS = 10_000;
export const BOOKIE_KEEPALIVE_TIMEOUT_MS = 5_000;

export interface AddStreamConnectionOptions {
  /** Ping the bookie this often while connected (grpc-js channels do the same: `keepalive_time_ms`). */
  keepaliveMs?: number;
  /** Drop the connection when a ping gets no answer within this. */
  keepaliveTimeoutMs?: number;
}

/**
 * What the end of an add stream means: `ended` when the bookie closed it
 * with OK after our `end()` (and the owner waits for that), otherwise the
 * error its adds fail with. `status` is the call's status, if one came;
 * `broke` says what happened when none did.
 */
export function addStreamOutcome(
  bookieId: string,
  status: { code: number; details: string; metadata?: Metadata } | undefined,
  ending: boolean,
  handlers: AddStreamHandlers,
  broke: string,
): 'ended' | SluiceError {
  if (status?.code === grpcStatus.OK) {
    return ending && handlers.ended
      ? 'ended'
      : new UnavailableError(`bookie ${bookieId} ended the add stream`);
  }
  if (status) return fromGrpcError(status);
  return new UnavailableError(`add stream to bookie ${bookieId} broke: ${broke}`);
}
