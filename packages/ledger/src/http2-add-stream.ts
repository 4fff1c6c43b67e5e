/**
 * The AddEntries stream to a bookie, driven over `node:http2` as plain gRPC
 * (for bookies without an add channel, see `AddChannelConnection`)
 * (same path, headers, framing and trailers as any gRPC client; the bookie
 * serves it with grpc-js like every other call).
 *
 * Why not grpc-js for this one call: a grpc-js client serializes each
 * request into one Buffer and then copies it into a frame of its own, per
 * stream. A writer sends every entry to Qw bookies, so a broker at full
 * load copied each payload byte four times (once to encode, once per bookie
 * to frame) and allocated as many large Buffers, all alive until the
 * socket took them. Here a request goes to HTTP/2 as its parts (a 5-byte
 * prefix, each entry's small head, the payload Buffers the writer already
 * holds), and HTTP/2 writes them to the socket from where they are.
 *
 * One HTTP/2 connection per bookie carries the stream (the client's other
 * calls stay on its grpc-js channel). A stream that breaks is not retried
 * here: its owner fails what was in flight and opens a new one.
 */
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect,
  constants,
  type IncomingHttpHeaders,
} from 'node:http2';
import { Metadata } from '@grpc/grpc-js';
import { type SluiceError, UnavailableError } from '@sluice/common';
import {
  ADD_ENTRIES_PATH,
  addEntriesRequestLength,
  addEntriesRequestParts,
  decodeAddEntriesResponse,
  GrpcFrameReader,
  grpcFramePrefix,
  MAX_GRPC_MESSAGE_BYTES,
} from '@sluice/proto';
import type { AddBatch } from './add-request-encoder.js';
import {
  type AddStream,
  type AddStreamConnectionOptions,
  type AddStreamHandlers,
  type AddStreamOpener,
  addStreamOutcome,
  BOOKIE_KEEPALIVE_MS,
  BOOKIE_KEEPALIVE_TIMEOUT_MS,
} from './add-stream.js';

/** Receive window for the responses (a few bytes per add). */
const RESPONSE_WINDOW_BYTES = 1024 * 1024;
/**
 * Node's per-session memory cap (MB), raised from its 10 MB default: data
 * written and not yet sent counts against it, and a session over it resets
 * its streams with ENHANCE_YOUR_CALM (a burst of 16 MiB of adds written
 * while the connection was still being set up did that, measured). What an
 * add stream holds is bounded by its owner (`maxInFlightBytes`, and no
 * writes past the high-water mark); grpc-js lifts the same cap on its
 * servers' sessions.
 */
const MAX_SESSION_MEMORY_MB = 1024;

/**
 * An HTTP/2 connection to one bookie that add streams are opened on. A
 * connection that stops answering (a bookie host gone without a reset)
 * is found by its pings and destroyed, which breaks its stream; the next
 * stream gets a new connection.
 */
export class AddStreamConnection implements AddStreamOpener {
  private session: ClientHttp2Session | undefined;
  private keepalive: NodeJS.Timeout | undefined;
  private readonly keepaliveMs: number;
  private readonly keepaliveTimeoutMs: number;

  constructor(
    readonly bookieId: string,
    readonly address: string,
    opts: AddStreamConnectionOptions = {},
  ) {
    this.keepaliveMs = opts.keepaliveMs ?? BOOKIE_KEEPALIVE_MS;
    this.keepaliveTimeoutMs = opts.keepaliveTimeoutMs ?? BOOKIE_KEEPALIVE_TIMEOUT_MS;
  }

  /** Open an AddEntries call; throws UnavailableError when HTTP/2 refuses to start one. */
  open(handlers: AddStreamHandlers): Http2AddStream {
    const session = this.connected();
    let stream: ClientHttp2Stream;
    try {
      stream = session.request({
        [constants.HTTP2_HEADER_METHOD]: 'POST',
        [constants.HTTP2_HEADER_PATH]: ADD_ENTRIES_PATH,
        [constants.HTTP2_HEADER_SCHEME]: 'http',
        [constants.HTTP2_HEADER_AUTHORITY]: this.address,
        [constants.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
        [constants.HTTP2_HEADER_TE]: 'trailers',
        'grpc-accept-encoding': 'identity',
        [constants.HTTP2_HEADER_USER_AGENT]: 'sluice-ledger',
      });
    } catch (err) {
      // E.g. a session that is closing: the next attempt starts over on a new one.
      this.reset();
      throw new UnavailableError(
        `cannot open an add stream to bookie ${this.bookieId} (${this.address}): ${(err as Error).message}`,
      );
    }
    return new Http2AddStream(this.bookieId, stream, handlers);
  }

  private connected(): ClientHttp2Session {
    const current = this.session;
    if (current && !current.closed && !current.destroyed) return current;
    const session = connect(`http://${this.address}`, {
      settings: { initialWindowSize: RESPONSE_WINDOW_BYTES, enablePush: false },
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
    });
    // A failed connection fails its streams, which report it; the session's own error needs no more.
    session.on('error', () => undefined);
    const drop = () => {
      if (this.session !== session) return;
      this.session = undefined;
      clearInterval(this.keepalive);
    };
    session.once('close', drop);
    // A bookie going away lets streams in flight finish; new ones go to a new connection.
    session.once('goaway', drop);
    // Like an idle grpc-js channel, the connection alone does not keep the process running.
    session.unref();
    this.session = session;
    clearInterval(this.keepalive);
    this.keepalive = setInterval(() => this.ping(session), this.keepaliveMs);
    this.keepalive.unref();
    return session;
  }

  private ping(session: ClientHttp2Session): void {
    if (session.destroyed || !session.socket) return;
    const timer = setTimeout(() => {
      if (this.session === session) this.reset();
      else session.destroy();
    }, this.keepaliveTimeoutMs);
    timer.unref();
    try {
      session.ping((err) => {
        clearTimeout(timer);
        if (err && !session.destroyed) session.destroy();
      });
    } catch {
      // Too many pings unanswered, or the session is closing: its close breaks the stream anyway.
      clearTimeout(timer);
    }
  }

  /** Drop the connection (its streams break); the next `open` connects again. */
  reset(): void {
    const session = this.session;
    this.session = undefined;
    clearInterval(this.keepalive);
    session?.destroy();
  }

  close(): void {
    this.reset();
  }
}

/** One AddEntries call in flight: requests written as parts, responses decoded as they arrive. */
export class Http2AddStream implements AddStream {
  private readonly reader = new GrpcFrameReader(MAX_GRPC_MESSAGE_BYTES);
  private over = false;
  private ending = false;
  private trailers: IncomingHttpHeaders | undefined;
  private streamError: Error | undefined;

  constructor(
    private readonly bookieId: string,
    private readonly stream: ClientHttp2Stream,
    private readonly handlers: AddStreamHandlers,
  ) {
    stream.on('response', (headers) => {
      const httpStatus = headers[':status'];
      if (httpStatus !== 200) {
        this.fail(new UnavailableError(`bookie ${bookieId} answered the add stream with HTTP ${httpStatus}`));
        return;
      }
      // A trailers-only response (the call failed before any message) carries its status here.
      if (headers['grpc-status'] !== undefined) this.trailers = headers;
    });
    stream.on('trailers', (trailers) => {
      this.trailers = trailers;
    });
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('error', (err) => {
      this.streamError = err;
    });
    // The bookie's side ends with its trailers ('end'), ours may still be open: the call is over then.
    stream.on('end', () => this.finish());
    stream.on('close', () => this.finish());
  }

  /**
   * Send one request; false once HTTP/2 holds more than its high-water mark
   * (wait for `onDrain`). The Buffers are referenced until written: nobody
   * may change them before their adds settle.
   */
  write(batch: AddBatch): boolean {
    if (this.over) return true;
    const { stream } = this;
    stream.cork();
    stream.write(grpcFramePrefix(addEntriesRequestLength(batch.entries, batch.recovery)));
    for (const part of addEntriesRequestParts(batch.entries, batch.recovery)) stream.write(part);
    stream.uncork();
    return !stream.writableNeedDrain;
  }

  /** No more requests: the bookie answers what it has, then ends the call. */
  end(): void {
    this.ending = true;
    this.stream.end();
  }

  onDrain(fn: () => void): void {
    this.stream.once('drain', fn);
  }

  /** End the call from this side (RST_STREAM CANCEL); `broken` is not called for it. */
  cancel(): void {
    this.over = true;
    if (!this.stream.destroyed) this.stream.close(constants.NGHTTP2_CANCEL);
  }

  private onData(chunk: Buffer): void {
    if (this.over) return;
    try {
      for (const message of this.reader.push(chunk))
        this.handlers.response(decodeAddEntriesResponse(message));
    } catch (err) {
      this.fail(
        new UnavailableError(
          `bookie ${this.bookieId} sent a malformed add response: ${(err as Error).message}`,
        ),
      );
    }
  }

  private finish(): void {
    if (this.over) return;
    const trailers = this.trailers;
    const code = trailers ? Number(trailers['grpc-status']) : Number.NaN;
    const message = trailers?.['grpc-message'];
    const out = addStreamOutcome(
      this.bookieId,
      Number.isInteger(code) && trailers
        ? {
            code,
            details: typeof message === 'string' ? decodeURIComponent(message) : '',
            metadata: Metadata.fromHttp2Headers(trailers),
          }
        : undefined,
      this.ending,
      this.handlers,
      this.streamError?.message ?? `closed with HTTP/2 code ${this.stream.rstCode ?? 'none'}`,
    );
    if (out !== 'ended') {
      this.fail(out);
      return;
    }
    this.over = true;
    this.handlers.ended?.();
  }

  private fail(err: SluiceError): void {
    if (this.over) return;
    this.over = true;
    if (!this.stream.destroyed) this.stream.close(constants.NGHTTP2_CANCEL);
    this.handlers.broken(err);
  }
}
