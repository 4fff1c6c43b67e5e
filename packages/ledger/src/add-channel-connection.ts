/**
 * AddEntries streams on a bookie's add channel (plain TCP; framing in
 * @sluice/proto's `add-channel.ts`): one connection per stream. A request
 * goes to the socket as its parts (frame header, each entry's small head,
 * the payload Buffers the writer already holds) in one corked writev.
 *
 * The channel has no keepalive of TCP's own that would notice a bookie host
 * gone without a reset in time, so the client pings it: a ping unanswered
 * within the timeout destroys the connection, which breaks the stream.
 */
import { connect, type Socket } from 'node:net';
import { type SluiceError, UnavailableError } from '@sluice/common';
import {
  ADD_CHANNEL_PREFACE,
  AddChannelFrame,
  AddChannelFrameReader,
  addChannelHeader,
  addEntriesRequestLength,
  addEntriesRequestParts,
  decodeAddChannelStatus,
  decodeAddEntriesResponse,
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

/** Bytes the socket may hold unsent before `write` asks the caller to wait. */
const HIGH_WATER_MARK_BYTES = 4 * 1024 * 1024;

/** Opens add streams on one bookie's add channel. */
export class AddChannelConnection implements AddStreamOpener {
  private current: AddChannelStream | undefined;
  private readonly keepaliveMs: number;
  private readonly keepaliveTimeoutMs: number;
  private readonly host: string;
  private readonly port: number;

  constructor(
    readonly bookieId: string,
    readonly address: string,
    opts: AddStreamConnectionOptions = {},
  ) {
    this.keepaliveMs = opts.keepaliveMs ?? BOOKIE_KEEPALIVE_MS;
    this.keepaliveTimeoutMs = opts.keepaliveTimeoutMs ?? BOOKIE_KEEPALIVE_TIMEOUT_MS;
    const colon = address.lastIndexOf(':');
    this.host = address.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
    this.port = Number(address.slice(colon + 1));
  }

  open(handlers: AddStreamHandlers): AddChannelStream {
    if (invalidAddress(this.host, this.port)) {
      throw new UnavailableError(
        `bookie ${this.bookieId} advertises an invalid add address '${this.address}'`,
      );
    }
    const socket = connect({ host: this.host, port: this.port, noDelay: true });
    const stream = new AddChannelStream(
      this.bookieId,
      socket,
      handlers,
      this.keepaliveMs,
      this.keepaliveTimeoutMs,
    );
    this.current = stream;
    return stream;
  }

  reset(): void {
    const s = this.current;
    this.current = undefined;
    s?.drop(new UnavailableError(`add channel to bookie ${this.bookieId} was reset`));
  }

  close(): void {
    this.reset();
  }
}

function invalidAddress(host: string, port: number): boolean {
  return host.length === 0 || !Number.isInteger(port) || port <= 0 || port > 65535;
}

/** One AddEntries stream on its own connection. */
export class AddChannelStream implements AddStream {
  private readonly reader = new AddChannelFrameReader(MAX_GRPC_MESSAGE_BYTES);
  private over = false;
  private ending = false;
  private status: { code: number; message: string } | undefined;
  private socketError: Error | undefined;
  private readonly keepalive: NodeJS.Timeout;
  /** When the ping in flight was sent (0: none). */
  private pingSentAt = 0;
  /** Adds written and not yet answered. */
  private unanswered = 0;

  constructor(
    private readonly bookieId: string,
    private readonly socket: Socket,
    private readonly handlers: AddStreamHandlers,
    keepaliveMs: number,
    keepaliveTimeoutMs: number,
  ) {
    socket.write(ADD_CHANNEL_PREFACE);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => {
      this.socketError = err;
    });
    socket.on('close', () => this.finish());
    this.keepalive = setInterval(
      () => {
        if (this.over) return;
        if (this.pingSentAt > 0) {
          // With adds unanswered the bookie may have stopped reading (its
          // in-flight cap, a slow disk): the owner's add timeout judges it then.
          if (this.unanswered === 0 && Date.now() - this.pingSentAt >= keepaliveTimeoutMs) {
            this.drop(new UnavailableError(`bookie ${bookieId} did not answer a ping on its add channel`));
          }
          return;
        }
        this.pingSentAt = Date.now();
        socket.write(addChannelHeader(AddChannelFrame.PING, 0));
      },
      Math.min(keepaliveMs, keepaliveTimeoutMs),
    );
    this.keepalive.unref();
  }

  write(batch: AddBatch): boolean {
    if (this.over) return true;
    this.unanswered += batch.entries.length;
    const { socket } = this;
    socket.cork();
    socket.write(
      addChannelHeader(AddChannelFrame.REQUEST, addEntriesRequestLength(batch.entries, batch.recovery)),
    );
    for (const part of addEntriesRequestParts(batch.entries, batch.recovery)) socket.write(part);
    socket.uncork();
    return socket.writableLength < HIGH_WATER_MARK_BYTES;
  }

  end(): void {
    this.ending = true;
    if (!this.over) this.socket.end();
  }

  onDrain(fn: () => void): void {
    this.socket.once('drain', fn);
  }

  cancel(): void {
    this.over = true;
    clearInterval(this.keepalive);
    this.socket.destroy();
  }

  /** Break the stream from this side: `broken` gets `err`. */
  drop(err: SluiceError): void {
    this.fail(err);
  }

  private onData(chunk: Buffer): void {
    if (this.over) return;
    try {
      for (const f of this.reader.push(chunk)) {
        if (f.kind === AddChannelFrame.RESPONSE) {
          const res = decodeAddEntriesResponse(f.body);
          this.unanswered -= res.results.length;
          this.handlers.response(res);
        } else if (f.kind === AddChannelFrame.PONG) this.pingSentAt = 0;
        else if (f.kind === AddChannelFrame.STATUS) this.status = decodeAddChannelStatus(f.body);
        else throw new Error(`unknown frame kind ${f.kind}`);
        if (this.over) return;
      }
    } catch (err) {
      this.fail(
        new UnavailableError(
          `bookie ${this.bookieId} sent malformed add channel data: ${(err as Error).message}`,
        ),
      );
    }
  }

  private finish(): void {
    if (this.over) return;
    const st = this.status;
    const out = addStreamOutcome(
      this.bookieId,
      st ? { code: st.code, details: st.message } : undefined,
      this.ending,
      this.handlers,
      this.socketError?.message ?? 'the connection closed',
    );
    if (out !== 'ended') {
      this.fail(out);
      return;
    }
    this.over = true;
    clearInterval(this.keepalive);
    this.handlers.ended?.();
  }

  private fail(err: SluiceError): void {
    if (this.over) return;
    this.over = true;
    clearInterval(this.keepalive);
    this.socket.destroy();
    this.handlers.broken(err);
  }
}
