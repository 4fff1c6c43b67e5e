/**
 * The bookie's add channel (framing in @sluice/proto's `add-channel.ts`):
 * AddEntries streams on plain TCP, read into memory the bookie owns.
 *
 * Why: over gRPC every received byte lands in fresh ArrayBuffers twice (an
 * HTTP/2 socket read buffer, then grpc-js's copy of each message). At the
 * rates a bookie takes, V8 counts that external memory and runs a scavenge
 * for every ~32 MB of it, 10–20 times a second, each one stopping the event
 * loop that acknowledges adds. Here each connection reads with `onread`
 * straight into large slabs kept in a pool: an add's payload is a slice of
 * a slab until the store is done with it (the write cache and the O_DIRECT
 * staging copy it anyway, the journal writes it from there), and a slab
 * goes back to the pool once every add read into it has settled.
 */
import { createServer, type Server, Socket } from 'node:net';
import { status as grpcStatus } from '@grpc/grpc-js';
import type { Logger } from '@sluice/common';
import {
  ADD_CHANNEL_HEADER_BYTES,
  ADD_CHANNEL_PREFACE,
  AddChannelFrame,
  addChannelHeader,
  addChannelStatusFrame,
  type DecodedAddEntriesRequest,
  decodeAddEntriesRequest,
  encodeAddEntriesResponse,
  MAX_GRPC_MESSAGE_BYTES,
} from '@sluice/proto';
import { AddSession, type BookieServiceOptions } from './bookie-service.js';

/** Bytes of a pooled slab: several requests (the ledger client sends ≤ 1 MiB each). */
export const SLAB_BYTES = 4 * 1024 * 1024;
/** A read is offered at least this much room; less left in a slab moves reading to a fresh one. */
const MIN_READ_BYTES = 64 * 1024;
/** Idle slabs kept for reuse, across connections. */
const MAX_SPARE_SLABS = 8;
/** Reads after a channel is over land here and are dropped. */
const DISCARD = Buffer.allocUnsafeSlow(MIN_READ_BYTES);
/** A channel that sent its final status is destroyed if the peer has not closed within this. */
const LINGER_MS = 10_000;

class Slab {
  /** Adds whose payload lies in this slab and has not settled. */
  refs = 0;
  /** Reading moved on to another slab. */
  retired = false;

  constructor(
    readonly buf: Buffer,
    private readonly pool: SlabPool,
  ) {}

  /** One add read from this slab settled. */
  readonly release = (): void => {
    if (--this.refs === 0 && this.retired) this.pool.give(this);
  };
}

/** Slabs for the add channels' reads, reused across connections. */
export class SlabPool {
  private readonly spares: Slab[] = [];
  /** Slabs of the standard size handed out and not yet back. */
  outstanding = 0;

  constructor(
    readonly slabBytes = SLAB_BYTES,
    private readonly maxSpares = MAX_SPARE_SLABS,
  ) {
    if (slabBytes < 2 * MIN_READ_BYTES) throw new Error(`a slab needs at least ${2 * MIN_READ_BYTES} bytes`);
  }

  /** A slab of at least `bytes` (pooled ones are `slabBytes`; a larger frame gets one of its own). */
  take(bytes: number): Slab {
    if (bytes > this.slabBytes) return new Slab(Buffer.allocUnsafeSlow(bytes), this);
    this.outstanding++;
    const s = this.spares.pop();
    if (s) {
      s.retired = false;
      return s;
    }
    return new Slab(Buffer.allocUnsafeSlow(this.slabBytes), this);
  }

  give(s: Slab): void {
    if (s.buf.length !== this.slabBytes || s.refs !== 0) return;
    this.outstanding--;
    if (this.spares.length < this.maxSpares) this.spares.push(s);
  }
}

export type AddChannelServiceOptions = Pick<
  BookieServiceOptions,
  'store' | 'metrics' | 'logger' | 'maxInFlightBytesPerStream' | 'maxInFlightAddsPerStream'
>;

/**
 * One connection: its bytes go into the current slab at `write`; frames
 * are parsed from `parse`; the bytes between are an incomplete frame.
 */
export class AddChannel {
  private slab: Slab;
  private parse = 0;
  private write = 0;
  private prefaced = false;
  private over = false;
  private readonly session: AddSession;
  private socket!: Socket;

  constructor(
    private readonly pool: SlabPool,
    opts: AddChannelServiceOptions,
    private readonly maxFrameBytes = MAX_GRPC_MESSAGE_BYTES,
  ) {
    // Until the preface is in, reads go to a buffer just its size: a
    // connection that sends nothing holds no slab.
    this.slab = new Slab(Buffer.alloc(ADD_CHANNEL_PREFACE.length), pool);
    opts.metrics.addStreamsTotal.inc({ transport: 'channel' });
    this.session = new AddSession(opts, {
      send: (results) => {
        if (this.over) return;
        const body = encodeAddEntriesResponse(results);
        this.socket.cork();
        this.socket.write(addChannelHeader(AddChannelFrame.RESPONSE, body.length));
        this.socket.write(body);
        this.socket.uncork();
      },
      pause: () => this.socket.pause(),
      resume: () => {
        if (!this.over) this.socket.resume();
      },
      finish: () => this.close(grpcStatus.OK, ''),
    });
  }

  /** The socket this channel answers on (set before its first read). */
  attach(socket: Socket): void {
    this.socket = socket;
  }

  /**
   * Where the next read goes: the rest of the current slab (never empty).
   * Once the channel is over, bytes still arriving go to a throwaway buffer:
   * a slab may be back in the pool by then.
   */
  nextBuffer(): Buffer {
    if (this.over) return DISCARD;
    return this.slab.buf.subarray(this.write);
  }

  /**
   * `n` bytes were read into `nextBuffer()`. Reading pauses only at the
   * session's in-flight cap; once the channel is over, what the peer still
   * sends is read and dropped until it closes, so that it gets the final
   * status rather than a reset.
   */
  received(n: number): void {
    if (this.over) return;
    this.write += n;
    try {
      this.parseFrames();
    } catch (err) {
      this.close(grpcStatus.INVALID_ARGUMENT, `malformed add channel data: ${(err as Error).message}`);
      return;
    }
    if (!this.over) this.makeRoom();
  }

  /** The same for a chunk that arrived in memory of its own (sockets read without `onread`). */
  receivedChunk(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      const into = this.nextBuffer();
      const n = chunk.copy(into, 0, at);
      at += n;
      this.received(n);
    }
  }

  /** The peer half-closed: answer what is in flight, then end with a status. */
  peerEnded(): void {
    if (this.over) return;
    if (this.write > this.parse || !this.prefaced) {
      this.close(grpcStatus.INVALID_ARGUMENT, 'add channel ended inside a frame');
      return;
    }
    this.session.end();
  }

  /** The connection is gone: send nothing more. */
  broken(): void {
    this.over = true;
    this.session.abort();
    this.retire();
  }

  private parseFrames(): void {
    const buf = this.slab.buf;
    if (!this.prefaced) {
      const have = Math.min(this.write - this.parse, ADD_CHANNEL_PREFACE.length);
      if (buf.compare(ADD_CHANNEL_PREFACE, 0, have, this.parse, this.parse + have) !== 0) {
        throw new Error('the connection did not open with the add channel preface');
      }
      if (have < ADD_CHANNEL_PREFACE.length) return;
      this.parse += ADD_CHANNEL_PREFACE.length;
      this.prefaced = true;
    }
    while (!this.over && this.write - this.parse >= ADD_CHANNEL_HEADER_BYTES) {
      const kind = buf[this.parse]!;
      const length = buf.readUInt32BE(this.parse + 1);
      if (length > this.maxFrameBytes) {
        this.close(
          grpcStatus.RESOURCE_EXHAUSTED,
          `add request of ${length} bytes is over the limit of ${this.maxFrameBytes}`,
        );
        return;
      }
      const end = this.parse + ADD_CHANNEL_HEADER_BYTES + length;
      if (end > this.write) return;
      const body = buf.subarray(this.parse + ADD_CHANNEL_HEADER_BYTES, end);
      this.parse = end;
      if (kind === AddChannelFrame.REQUEST) this.request(body);
      else if (kind === AddChannelFrame.PING) this.socket.write(addChannelHeader(AddChannelFrame.PONG, 0));
      else throw new Error(`unknown frame kind ${kind}`);
    }
  }

  private request(body: Buffer): void {
    let req: DecodedAddEntriesRequest;
    try {
      req = decodeAddEntriesRequest(body);
    } catch (err) {
      throw new Error(`add request does not decode: ${(err as Error).message}`);
    }
    // Payloads are slices of the slab: it stays out of the pool until each settles.
    this.slab.refs += req.entries.length;
    this.session.request(req, this.slab.release);
  }

  /** Keep at least MIN_READ_BYTES (or the rest of a known frame) of room for the next read. */
  private makeRoom(): void {
    const partial = this.write - this.parse;
    const buf = this.slab.buf;
    if (partial === 0 && this.slab.refs === 0 && buf.length >= MIN_READ_BYTES) {
      // Everything read from this slab has settled: read into it again from the start.
      this.parse = 0;
      this.write = 0;
      return;
    }
    let need = MIN_READ_BYTES;
    if (partial >= ADD_CHANNEL_HEADER_BYTES && this.prefaced) {
      const frame = ADD_CHANNEL_HEADER_BYTES + buf.readUInt32BE(this.parse + 1);
      // The frame fits where it started: reads complete it in place.
      if (this.parse + frame <= buf.length) return;
      need = frame;
    } else if (buf.length - this.write >= MIN_READ_BYTES) {
      return;
    }
    const next = this.pool.take(Math.max(need, partial + MIN_READ_BYTES));
    buf.copy(next.buf, 0, this.parse, this.write);
    this.retire();
    this.slab = next;
    this.parse = 0;
    this.write = partial;
  }

  private retire(): void {
    const s = this.slab;
    if (s.retired) return;
    s.retired = true;
    if (s.refs === 0) this.pool.give(s);
  }

  private close(code: number, message: string): void {
    if (this.over) return;
    this.over = true;
    this.session.abort();
    this.retire();
    const socket = this.socket;
    socket.end(addChannelStatusFrame(code, message));
    // Keep reading (and dropping, see `received`) so the peer gets the status; then let go.
    socket.resume();
    setTimeout(() => socket.destroy(), LINGER_MS).unref();
  }
}

/**
 * Listens for add channels. Accepted sockets are re-created around their
 * handle with `onread` (net.Server has no such option), so that their reads
 * land in the channel's slabs instead of a fresh buffer per read.
 */
export class AddChannelServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly pool = new SlabPool();

  constructor(
    private readonly opts: AddChannelServiceOptions & { logger: Logger },
    private readonly maxFrameBytes = MAX_GRPC_MESSAGE_BYTES,
  ) {
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (accepted) =>
      this.accept(accepted),
    );
    this.server.on('error', (err) => opts.logger.error({ err }, 'add channel listener failed'));
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) =>
        reject(new Error(`cannot listen for add channels on ${host}:${port}: ${err.message}`));
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        const a = this.server.address();
        resolve(typeof a === 'object' && a ? a.port : port);
      });
    });
  }

  private accept(accepted: Socket): void {
    const channel = new AddChannel(this.pool, this.opts, this.maxFrameBytes);
    const handle = (accepted as unknown as { _handle?: unknown })._handle;
    let socket = accepted;
    if (handle) {
      (accepted as unknown as { _handle: unknown })._handle = null;
      accepted.destroy();
      socket = new Socket({
        handle,
        allowHalfOpen: true,
        onread: {
          buffer: () => channel.nextBuffer(),
          callback: (n: number) => {
            channel.received(n);
            return true;
          },
        },
      } as ConstructorParameters<typeof Socket>[0]);
    } else {
      // Without a handle to take over, read as usual and copy each chunk in.
      accepted.on('data', (chunk: Buffer) => channel.receivedChunk(chunk));
      accepted.resume();
    }
    channel.attach(socket);
    this.sockets.add(socket);
    socket.setKeepAlive(true, 30_000);
    socket.on('end', () => channel.peerEnded());
    socket.on('error', (err) => this.opts.logger.debug({ err }, 'add channel failed'));
    socket.on('close', () => {
      this.sockets.delete(socket);
      channel.broken();
    });
  }

  /** Stop listening and drop every channel (adds in flight still settle in the store). */
  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
