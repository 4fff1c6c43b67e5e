/**
 * A BookieClient over gRPC. Adds share one long-lived AddEntries stream per
 * bookie: adds issued in the same tick go out as one request, results are
 * matched by (ledger, entry). A broken stream fails every add in flight on
 * it (the writer then changes its ensemble) and the next add opens a new
 * one. In-flight adds are bounded; an add that waits longer than
 * `addTimeoutMs` fails the whole stream, since a bookie that stopped
 * answering one add has stopped answering all of them.
 */
import {
  type ClientReadableStream,
  credentials,
  status as grpcStatus,
  type ServiceError,
} from '@grpc/grpc-js';
import {
  type BookieId,
  type EntryId,
  fromGrpcError,
  InternalError,
  InvalidArgumentError,
  type LedgerId,
  ResourceExhaustedError,
  type SluiceError,
  TimeoutError,
  UnavailableError,
} from '@sluice/common';
import type {
  BookieServiceClient,
  DecodedReadEntriesResponse,
  EncodedEntry,
  Entry__Output,
  FenceResponse__Output,
  ReadEntriesRequest,
  ReadEntryResponse__Output,
  ReadLacResponse__Output,
} from '@sluice/proto';
import { decodeReadEntriesResponse, loadProto, MAX_GRPC_MESSAGE_BYTES } from '@sluice/proto';
import { AddChannelConnection } from './add-channel-connection.js';
import { encodeWireEntry, payloadLengthOf } from './add-request-encoder.js';
import {
  type AddStream,
  type AddStreamOpener,
  BOOKIE_KEEPALIVE_MS,
  BOOKIE_KEEPALIVE_TIMEOUT_MS,
} from './add-stream.js';
import type {
  AddOutcome,
  BookieClient,
  BookieClientPool,
  EntryStatus,
  LacOutcome,
  RangeOutcome,
  ReadOutcome,
  WireEntry,
} from './bookie-client.js';
import { type BookieDirectory, MetadataBookieDirectory } from './bookie-directory.js';
import { AddStreamConnection } from './http2-add-stream.js';
import { UnknownBookie } from './memory-bookie.js';

export interface GrpcBookieClientOptions {
  addTimeoutMs?: number;
  readTimeoutMs?: number;
  /** Max adds awaiting their result on this bookie; further adds wait. */
  maxInFlightAdds?: number;
  /**
   * Max payload bytes of adds awaiting their result on this bookie; further
   * adds wait (an add larger than this goes alone). Adds waiting are bounded
   * to four times both limits, then fail with ResourceExhaustedError.
   */
  maxInFlightBytes?: number;
  /**
   * host:port of the bookie's add channel (from its registration): adds go
   * there on plain TCP. Without it they go over gRPC (HTTP/2).
   */
  addAddress?: string;
  /** Ping a bookie's add connection this often; one unanswered for `keepaliveTimeoutMs` drops it. */
  keepaliveMs?: number;
  keepaliveTimeoutMs?: number;
  /**
   * Pool only: clients for bookies in this process (standalone), used for
   * their ids instead of gRPC; the pool closes them with itself.
   */
  localClients?: BookieClient[];
}

type Ctor = (new (
  address: string,
  creds: ReturnType<typeof credentials.createInsecure>,
  options: object,
) => BookieServiceClient) & {
  service: { ReadEntries?: { requestSerialize: (req: ReadEntriesRequest) => Buffer } };
};

function serviceCtor(): Ctor {
  const pkg = loadProto('bookie.proto') as unknown as { sluice: { v1: { BookieService: Ctor } } };
  return pkg.sluice.v1.BookieService;
}

/** The generated encoder of ReadEntriesRequest (four scalars: not worth a hand-written one). */
function readEntriesRequestSerializer(): (req: ReadEntriesRequest) => Buffer {
  const method = serviceCtor().service.ReadEntries;
  if (!method) {
    throw new InternalError(
      'bookie.proto has no ReadEntries method; rebuild @sluice/proto from this checkout',
    );
  }
  return method.requestSerialize;
}

export function statusName(s: string | number | undefined): EntryStatus {
  const name = String(s ?? '').replace(/^ENTRY_STATUS_/, '');
  switch (name) {
    case 'OK':
    case 'FENCED':
    case 'NO_ENTRY':
    case 'NO_LEDGER':
    case 'CORRUPT':
    case 'INVALID':
    case 'READ_ONLY':
    case 'IO_ERROR':
      return name;
    default:
      return 'INVALID';
  }
}

function fromWire(e: Entry__Output): WireEntry {
  return {
    ledgerId: Number(e.ledgerId),
    entryId: Number(e.entryId),
    lac: Number(e.lac),
    payload: e.payload,
    crc32c: e.crc32c >>> 0,
    ledgerLength: Number(e.ledgerLength ?? 0),
  };
}

/**
 * ReadEntries responses go through the hand-written codec: entries decode
 * straight into WireEntry objects whose payloads are slices of the received
 * message (protobufjs built a message object per entry, then fromWire
 * another, with a Long check per 64-bit field).
 */
const READ_ENTRIES_PATH = '/sluice.v1.BookieService/ReadEntries';

/** Payload bytes per AddEntriesRequest. */
const MAX_BATCH_BYTES = 1024 * 1024;

/**
 * HTTP/2 receive window per stream and per connection on channels to
 * bookies. grpc-js keeps 64 KiB otherwise, so a catch-up block read (a
 * ReadEntries stream of ~12.8 MiB) stalls for a WINDOW_UPDATE round trip
 * every 64 KiB. Bounded: a bookie stops sending at the window.
 */
const BOOKIE_FLOW_CONTROL_WINDOW_BYTES = 16 * 1024 * 1024;

interface InFlight {
  resolve: (o: AddOutcome) => void;
  reject: (e: SluiceError) => void;
  sentAt: number;
  bytes: number;
}

export class GrpcBookieClient implements BookieClient {
  private readonly client: BookieServiceClient;
  private readonly serializeReadRequest = readEntriesRequestSerializer();
  /** AddEntries runs on a connection of its own, without grpc-js: the add channel, or HTTP/2. */
  private readonly addConnection: AddStreamOpener;
  private stream: AddStream | undefined;
  private readonly inflight = new Map<string, InFlight[]>();
  private inflightCount = 0;
  private inflightBytes = 0;
  private readonly queued: { entry: WireEntry; recovery: boolean; waiter: InFlight }[] = [];
  private queuedBytes = 0;
  /** Requests not yet written, oldest first; held back while the stream is over its high-water mark. */
  private batch: { entries: EncodedEntry[]; recovery: boolean; bytes: number }[] = [];
  private flushScheduled = false;
  /** The stream whose write() asked us to wait for 'drain'. */
  private blocked: AddStream | undefined;
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  private readonly addTimeoutMs: number;
  private readonly readTimeoutMs: number;
  private readonly maxInFlight: number;
  private readonly maxInFlightBytes: number;

  constructor(
    readonly bookieId: BookieId,
    readonly address: string,
    opts: GrpcBookieClientOptions = {},
  ) {
    this.addTimeoutMs = opts.addTimeoutMs ?? 10_000;
    this.readTimeoutMs = opts.readTimeoutMs ?? 10_000;
    this.maxInFlight = opts.maxInFlightAdds ?? 4096;
    this.maxInFlightBytes = opts.maxInFlightBytes ?? 64 * 1024 * 1024;
    const keepaliveMs = opts.keepaliveMs ?? BOOKIE_KEEPALIVE_MS;
    const keepaliveTimeoutMs = opts.keepaliveTimeoutMs ?? BOOKIE_KEEPALIVE_TIMEOUT_MS;
    const Service = serviceCtor();
    this.client = new Service(address, credentials.createInsecure(), {
      'grpc.max_receive_message_length': MAX_GRPC_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_GRPC_MESSAGE_BYTES,
      'grpc.keepalive_time_ms': keepaliveMs,
      'grpc.keepalive_timeout_ms': keepaliveTimeoutMs,
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 2_000,
      'grpc-node.flow_control_window': BOOKIE_FLOW_CONTROL_WINDOW_BYTES,
    });
    const keepalive = { keepaliveMs, keepaliveTimeoutMs };
    this.addConnection = opts.addAddress
      ? new AddChannelConnection(bookieId, opts.addAddress, keepalive)
      : new AddStreamConnection(bookieId, address, keepalive);
    this.timer = setInterval(() => this.checkTimeouts(), Math.max(50, Math.min(1000, this.addTimeoutMs / 4)));
    this.timer.unref();
  }

  add(entry: WireEntry, recovery = false): Promise<AddOutcome> {
    if (this.closed)
      return Promise.reject(new UnavailableError(`client of bookie ${this.bookieId} is closed`));
    try {
      // Encoded up front (and memoized): a malformed entry fails alone, before it holds a slot.
      encodeWireEntry(entry);
    } catch (err) {
      return Promise.reject(
        new InvalidArgumentError(
          `entry ${entry.ledgerId}:${entry.entryId} cannot be encoded (${(err as Error).message})`,
        ),
      );
    }
    return new Promise<AddOutcome>((resolve, reject) => {
      const waiter: InFlight = { resolve, reject, sentAt: Date.now(), bytes: payloadLengthOf(entry) };
      // Adds go out in order: once one waits, later ones wait behind it.
      if (this.queued.length > 0 || !this.hasRoomFor(waiter.bytes)) {
        if (
          this.queued.length >= this.maxInFlight * 4 ||
          this.queuedBytes + waiter.bytes > this.maxInFlightBytes * 4
        ) {
          reject(
            new ResourceExhaustedError(
              `too many adds (${this.queued.length}, ${this.queuedBytes} bytes) queued for bookie ${this.bookieId}; slow down`,
            ),
          );
          return;
        }
        this.queued.push({ entry, recovery, waiter });
        this.queuedBytes += waiter.bytes;
        return;
      }
      this.dispatch(entry, recovery, waiter);
    });
  }

  private hasRoomFor(bytes: number): boolean {
    if (this.inflightCount >= this.maxInFlight) return false;
    return this.inflightBytes === 0 || this.inflightBytes + bytes <= this.maxInFlightBytes;
  }

  private dispatch(entry: WireEntry, recovery: boolean, waiter: InFlight): void {
    const key = `${entry.ledgerId}:${entry.entryId}`;
    waiter.sentAt = Date.now();
    const list = this.inflight.get(key);
    if (list) list.push(waiter);
    else this.inflight.set(key, [waiter]);
    this.inflightCount++;
    this.inflightBytes += waiter.bytes;
    const encoded = encodeWireEntry(entry);
    const last = this.batch.at(-1);
    // Requests stay far below the gRPC message limit however many adds pile up in one tick.
    if (last && last.recovery === recovery && last.bytes + waiter.bytes <= MAX_BATCH_BYTES) {
      last.entries.push(encoded);
      last.bytes += waiter.bytes;
    } else {
      this.batch.push({ entries: [encoded], recovery, bytes: waiter.bytes });
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    // Nothing to send (e.g. a broken stream failed it all): no reason to open a stream.
    if (this.closed || this.batch.length === 0) return;
    let stream: AddStream;
    try {
      stream = this.addStream();
    } catch (err) {
      this.failAll(err as SluiceError);
      return;
    }
    if (this.blocked === stream) return;
    while (this.batch.length > 0) {
      const b = this.batch.shift()!;
      if (!stream.write({ entries: b.entries, recovery: b.recovery })) {
        // HTTP/2 buffers whatever we write; stop here so memory stays bounded by what flow control lets through.
        this.blocked = stream;
        stream.onDrain(() => {
          if (this.blocked !== stream) return;
          this.blocked = undefined;
          this.flush();
        });
        return;
      }
    }
  }

  private addStream(): AddStream {
    if (this.stream) return this.stream;
    const stream = this.addConnection.open({
      response: (res) => {
        for (const r of res.results) {
          const key = `${r.ledgerId}:${r.entryId}`;
          const list = this.inflight.get(key);
          const w = list?.shift();
          if (!w) continue;
          if (list && list.length === 0) this.inflight.delete(key);
          this.settled(w.bytes);
          w.resolve({ status: statusName(r.status), message: r.message });
        }
      },
      broken: (err) => {
        if (this.stream !== stream) return;
        this.stream = undefined;
        this.failAll(err);
      },
    });
    this.stream = stream;
    return stream;
  }

  private settled(bytes: number): void {
    this.inflightCount--;
    this.inflightBytes -= bytes;
    while (this.queued.length > 0 && this.hasRoomFor(this.queued[0]!.waiter.bytes)) {
      const q = this.queued.shift()!;
      this.queuedBytes -= q.waiter.bytes;
      this.dispatch(q.entry, q.recovery, q.waiter);
    }
  }

  private failAll(err: SluiceError): void {
    const waiters = [...this.inflight.values()].flat();
    this.inflight.clear();
    this.inflightCount = 0;
    this.inflightBytes = 0;
    this.batch = [];
    this.blocked = undefined;
    for (const w of waiters) w.reject(err);
    this.queuedBytes = 0;
    const queued = this.queued.splice(0);
    for (const q of queued) q.waiter.reject(err);
  }

  private checkTimeouts(): void {
    if (this.inflightCount === 0) return;
    const now = Date.now();
    let oldest = now;
    for (const list of this.inflight.values()) for (const w of list) oldest = Math.min(oldest, w.sentAt);
    if (now - oldest < this.addTimeoutMs) return;
    const stream = this.stream;
    this.stream = undefined;
    // A bookie that answers nothing may sit behind a dead connection: the next stream gets a new one.
    this.addConnection.reset();
    this.failAll(
      new TimeoutError(
        `bookie ${this.bookieId} (${this.address}) did not answer an add within ${this.addTimeoutMs} ms`,
      ),
    );
    stream?.cancel();
  }

  private deadline(): Date {
    return new Date(Date.now() + this.readTimeoutMs);
  }

  private unary<Res>(call: (cb: (err: ServiceError | null, res?: Res) => void) => unknown): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      call((err, res) => {
        if (err || !res) reject(fromGrpcError(err ?? new Error('empty response')));
        else resolve(res);
      });
    });
  }

  async read(ledgerId: LedgerId, entryId: EntryId, fence = false): Promise<ReadOutcome> {
    const r = await this.unary<ReadEntryResponse__Output>((cb) =>
      this.client.ReadEntry({ ledgerId, entryId, fence }, { deadline: this.deadline() }, cb),
    );
    const status = statusName(r.status);
    return {
      status,
      lac: Number(r.lac),
      message: r.message,
      ...(status === 'OK' && r.entry ? { entry: fromWire(r.entry) } : {}),
    };
  }

  readRange(ledgerId: LedgerId, first: EntryId, last: EntryId): Promise<RangeOutcome> {
    return new Promise<RangeOutcome>((resolve, reject) => {
      const entries: WireEntry[] = [];
      let stoppedBy: EntryStatus | undefined;
      const call: ClientReadableStream<DecodedReadEntriesResponse> = this.client.makeServerStreamRequest(
        READ_ENTRIES_PATH,
        this.serializeReadRequest,
        decodeReadEntriesResponse,
        { ledgerId, firstEntryId: first, lastEntryId: last, maxBytesPerChunk: 1024 * 1024 },
        { deadline: this.deadline() },
      );
      call.on('data', (res: DecodedReadEntriesResponse) => {
        for (const e of res.entries) entries.push(e);
        const s = statusName(res.stoppedBy);
        if (res.stoppedBy !== 'ENTRY_STATUS_UNSPECIFIED' && s !== 'OK') stoppedBy = s;
      });
      call.on('error', (err: ServiceError) => {
        if (err.code === grpcStatus.OK) return;
        reject(fromGrpcError(err));
      });
      call.on('end', () => resolve(stoppedBy ? { entries, stoppedBy } : { entries }));
    });
  }

  async readLac(ledgerId: LedgerId, fence = false): Promise<LacOutcome> {
    const r = await this.unary<ReadLacResponse__Output>((cb) =>
      this.client.ReadLac({ ledgerId, fence }, { deadline: this.deadline() }, cb),
    );
    return { status: statusName(r.status), lac: Number(r.lac), lastEntryId: Number(r.lastEntryId) };
  }

  async fence(ledgerId: LedgerId): Promise<LacOutcome> {
    const r = await this.unary<FenceResponse__Output>((cb) =>
      this.client.Fence({ ledgerId }, { deadline: this.deadline() }, cb),
    );
    return { status: statusName(r.status), lac: Number(r.lac), lastEntryId: Number(r.lastEntryId) };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    const stream = this.stream;
    this.stream = undefined;
    this.failAll(new UnavailableError(`client of bookie ${this.bookieId} was closed`));
    stream?.cancel();
    this.addConnection.close();
    this.client.close();
  }
}

/**
 * One GrpcBookieClient per bookie id, resolving addresses through the
 * directory on first use and again whenever a bookie's address changes.
 */
export class GrpcBookieClientPool implements BookieClientPool {
  private readonly clients = new Map<BookieId, BookieClient>();
  private readonly addresses = new Map<BookieId, { address: string; addAddress?: string }>();
  private readonly locals = new Map<BookieId, BookieClient>();

  constructor(
    private readonly directory: BookieDirectory,
    private readonly opts: GrpcBookieClientOptions = {},
  ) {
    for (const c of opts.localClients ?? []) this.setLocalClient(c);
  }

  /**
   * Reach `client.bookieId` through `client` instead of gRPC (a bookie in
   * this process: no encode, loopback hop and decode per entry). The pool
   * owns it from now on and closes it with itself.
   */
  setLocalClient(client: BookieClient): void {
    this.locals.set(client.bookieId, client);
  }

  /** Learn addresses before use; call after the directory changed. */
  async refresh(): Promise<void> {
    for (const b of await this.directory.list()) {
      const prev = this.addresses.get(b.bookieId);
      this.addresses.set(b.bookieId, {
        address: b.address,
        ...(b.addAddress ? { addAddress: b.addAddress } : {}),
      });
      if (prev !== undefined && (prev.address !== b.address || prev.addAddress !== b.addAddress)) {
        const c = this.clients.get(b.bookieId);
        this.clients.delete(b.bookieId);
        await c?.close();
      }
    }
  }

  get(bookieId: BookieId): BookieClient {
    let c = this.locals.get(bookieId) ?? this.clients.get(bookieId);
    if (c) return c;
    const found = this.addresses.get(bookieId);
    if (!found) return new DeferredBookieClient(bookieId, () => this.resolve(bookieId));
    c = new GrpcBookieClient(bookieId, found.address, {
      ...this.opts,
      ...(found.addAddress ? { addAddress: found.addAddress } : {}),
    });
    this.clients.set(bookieId, c);
    return c;
  }

  /** A bookie not seen before (e.g. an ensemble-change replacement): look it up once more. */
  private async resolve(bookieId: BookieId): Promise<BookieClient> {
    if (!this.addresses.has(bookieId)) {
      if (this.directory instanceof MetadataBookieDirectory) this.directory.invalidate();
      await this.refresh();
    }
    return this.addresses.has(bookieId) ? this.get(bookieId) : new UnknownBookie(bookieId);
  }

  async close(): Promise<void> {
    const all = [...this.clients.values(), ...this.locals.values()];
    this.clients.clear();
    this.locals.clear();
    await Promise.all(all.map((c) => c.close()));
  }
}

/** Resolves its bookie on every call until the address is known. */
class DeferredBookieClient implements BookieClient {
  constructor(
    readonly bookieId: BookieId,
    private readonly resolve: () => Promise<BookieClient>,
  ) {}
  async add(entry: WireEntry, recovery?: boolean): Promise<AddOutcome> {
    return (await this.resolve()).add(entry, recovery);
  }
  async read(ledgerId: LedgerId, entryId: EntryId, fence?: boolean): Promise<ReadOutcome> {
    return (await this.resolve()).read(ledgerId, entryId, fence);
  }
  async readRange(ledgerId: LedgerId, first: EntryId, last: EntryId): Promise<RangeOutcome> {
    return (await this.resolve()).readRange(ledgerId, first, last);
  }
  async readLac(ledgerId: LedgerId, fence?: boolean): Promise<LacOutcome> {
    return (await this.resolve()).readLac(ledgerId, fence);
  }
  async fence(ledgerId: LedgerId): Promise<LacOutcome> {
    return (await this.resolve()).fence(ledgerId);
  }
  async close(): Promise<void> {}
}
