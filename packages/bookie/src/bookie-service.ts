import type {
  ServerDuplexStream,
  ServerUnaryCall,
  ServerWritableStream,
  ServiceDefinition,
  sendUnaryData,
} from '@grpc/grpc-js';
import { InternalError, InvalidArgumentError, type Logger, toServiceError } from '@sluice/common';
import {
  type AddResultFields,
  type DecodedAddEntriesRequest,
  decodeAddEntriesRequest,
  type Entry,
  encodeAddEntriesResponse,
  encodeReadEntriesResponse,
  type FenceRequest__Output,
  type FenceResponse,
  type GetBookieInfoRequest__Output,
  type GetBookieInfoResponse,
  loadProto,
  type ReadEntriesChunk,
  type ReadEntriesRequest__Output,
  type ReadEntryRequest__Output,
  type ReadEntryResponse,
  type ReadLacRequest__Output,
  type ReadLacResponse,
} from '@sluice/proto';
import type { BookieStore, EntryStatusName, Outcome } from './bookie-store.js';
import type { StoredEntry } from './entry-log.js';
import type { ReadResult } from './ledger-storage.js';
import type { BookieMetrics } from './metrics.js';

export interface BookieServiceOptions {
  store: BookieStore;
  logger: Logger;
  metrics: BookieMetrics;
  maxInFlightBytesPerStream: number;
  /** Adds received on one stream and not yet acknowledged before it is paused, whatever their size. */
  maxInFlightAddsPerStream: number;
  info: () => { bookieId: string; freeBytes: number; totalBytes: number };
}

const wire = (s: EntryStatusName) => `ENTRY_STATUS_${s}` as const;
const DEFAULT_CHUNK_BYTES = 1024 * 1024;
/** Entries read ahead in parallel by a range read (page-cache friendly, bounded). */
const READ_AHEAD = 16;

function toWire(e: StoredEntry): Entry {
  return {
    ledgerId: e.ledgerId,
    entryId: e.entryId,
    lac: e.lac,
    payload: e.payload,
    crc32c: e.crc32c,
    ledgerLength: e.ledgerLength,
  };
}

/** What the AddEntries handler writes: results that complete together. */
export interface AddEntriesReply {
  results: AddResultFields[];
}

/**
 * sluice.v1.BookieService with AddEntries and ReadEntries responses on the
 * hand-written codecs of @sluice/proto: add requests decode into entries
 * whose payloads are slices of the received message (no protobufjs object
 * per entry), add results and read chunks encode without protobufjs (a read
 * chunk copies each stored payload once). The wire format is bookie.proto's;
 * the other methods keep the generated codec.
 */
export function bookieServiceDefinition(): ServiceDefinition {
  const pkg = loadProto('bookie.proto') as unknown as {
    sluice: { v1: { BookieService: { service: ServiceDefinition } } };
  };
  const base = pkg.sluice.v1.BookieService.service;
  const addEntries = base.AddEntries;
  const readEntries = base.ReadEntries;
  if (!addEntries || !readEntries) {
    throw new InternalError(
      'bookie.proto lacks AddEntries or ReadEntries; rebuild @sluice/proto from this checkout',
    );
  }
  return {
    ...base,
    AddEntries: {
      ...addEntries,
      requestDeserialize: decodeAddEntriesRequest,
      responseSerialize: (reply: AddEntriesReply) => encodeAddEntriesResponse(reply.results),
    },
    ReadEntries: { ...readEntries, responseSerialize: encodeReadEntriesResponse },
  };
}

/** gRPC handlers of sluice.v1.BookieService over a BookieStore. */
export function createBookieService(opts: BookieServiceOptions) {
  const { store, metrics, logger } = opts;

  function countRead(r: ReadResult): void {
    metrics.readsTotal.inc({ status: r.status });
    if (r.status === 'OK') metrics.readBytesTotal.inc(r.entry.payload.length);
  }

  return {
    AddEntries(call: ServerDuplexStream<DecodedAddEntriesRequest, AddEntriesReply>): void {
      metrics.addStreamsTotal.inc({ transport: 'grpc' });
      const session = new AddSession(opts, {
        send: (results) => {
          if (!call.destroyed && !call.cancelled) call.write({ results });
        },
        pause: () => call.pause(),
        resume: () => call.resume(),
        finish: () => call.end(),
      });
      call.on('data', (req: DecodedAddEntriesRequest) => session.request(req));
      call.on('end', () => session.end());
      call.on('error', (err) => {
        session.abort();
        logger.debug({ err }, 'add stream failed');
      });
    },

    async ReadEntry(
      call: ServerUnaryCall<ReadEntryRequest__Output, ReadEntryResponse>,
      cb: sendUnaryData<ReadEntryResponse>,
    ): Promise<void> {
      try {
        const { ledgerId, entryId, fence } = call.request;
        if (!Number.isSafeInteger(entryId) || entryId < -1) {
          throw new InvalidArgumentError(
            `entry id ${entryId} is invalid; use an id >= 0, or -1 for the last entry`,
          );
        }
        if (fence) {
          const f = await store.fence(ledgerId);
          if (f.status !== 'OK') {
            cb(null, { status: wire(f.status), message: f.message, lac: -1 });
            return;
          }
        }
        const r = await store.read(ledgerId, entryId);
        countRead(r);
        const lac = store.lac(ledgerId)?.lac ?? -1;
        if (r.status === 'OK') cb(null, { status: wire('OK'), entry: toWire(r.entry), lac, message: '' });
        else cb(null, { status: wire(r.status), message: r.message, lac });
      } catch (err) {
        cb(toServiceError(err));
      }
    },

    async ReadEntries(
      call: ServerWritableStream<ReadEntriesRequest__Output, ReadEntriesChunk>,
    ): Promise<void> {
      try {
        const { ledgerId, firstEntryId, lastEntryId } = call.request;
        const chunkBytes = call.request.maxBytesPerChunk || DEFAULT_CHUNK_BYTES;
        if (!Number.isSafeInteger(firstEntryId) || firstEntryId < 0 || !Number.isSafeInteger(lastEntryId)) {
          throw new InvalidArgumentError(
            `range ${firstEntryId}..${lastEntryId} is invalid; ids must be >= 0`,
          );
        }
        if (lastEntryId < firstEntryId) {
          throw new InvalidArgumentError(
            `range ${firstEntryId}..${lastEntryId} is empty; last must be >= first`,
          );
        }
        // Stored entries go to the serializer as they are: it copies each payload once, straight into the chunk.
        let chunk: StoredEntry[] = [];
        let bytes = 0;
        const send = async (msg: ReadEntriesChunk) => {
          if (!call.write(msg)) await new Promise<void>((resolve) => call.once('drain', resolve));
        };
        for (let id = firstEntryId; id <= lastEntryId && !call.cancelled; ) {
          const n = Math.min(READ_AHEAD, lastEntryId - id + 1);
          const reads = await Promise.all(Array.from({ length: n }, (_, k) => store.read(ledgerId, id + k)));
          for (const r of reads) {
            countRead(r);
            if (r.status !== 'OK') {
              await send({ entries: chunk, stoppedBy: wire(r.status), stoppedAt: id });
              call.end();
              return;
            }
            if (chunk.length > 0 && bytes + r.entry.payload.length > chunkBytes) {
              await send({ entries: chunk });
              chunk = [];
              bytes = 0;
            }
            chunk.push(r.entry);
            bytes += r.entry.payload.length;
            id++;
          }
        }
        if (chunk.length > 0) await send({ entries: chunk });
        call.end();
      } catch (err) {
        // grpc-js turns an 'error' event into the call's status; destroy() would leave the call hanging.
        call.emit('error', toServiceError(err));
      }
    },

    ReadLac(
      call: ServerUnaryCall<ReadLacRequest__Output, ReadLacResponse>,
      cb: sendUnaryData<ReadLacResponse>,
    ): void {
      const { ledgerId, fence } = call.request;
      const answer = async (): Promise<ReadLacResponse> => {
        if (fence) {
          const f = await store.fence(ledgerId);
          return { status: wire(f.status), lac: f.lac, lastEntryId: f.lastEntryId };
        }
        const l = store.lac(ledgerId);
        return l
          ? { status: wire('OK'), lac: l.lac, lastEntryId: l.lastEntryId }
          : { status: wire('NO_LEDGER'), lac: -1, lastEntryId: -1 };
      };
      answer().then(
        (res) => cb(null, res),
        (err) => cb(toServiceError(err)),
      );
    },

    Fence(
      call: ServerUnaryCall<FenceRequest__Output, FenceResponse>,
      cb: sendUnaryData<FenceResponse>,
    ): void {
      store.fence(call.request.ledgerId).then(
        (f) => cb(null, { status: wire(f.status), lac: f.lac, lastEntryId: f.lastEntryId }),
        (err) => cb(toServiceError(err)),
      );
    },

    GetBookieInfo(
      _call: ServerUnaryCall<GetBookieInfoRequest__Output, GetBookieInfoResponse>,
      cb: sendUnaryData<GetBookieInfoResponse>,
    ): void {
      const i = opts.info();
      cb(null, { ...i, readOnly: store.readOnly || !!store.journal.failed });
    },
  };
}

/** Where an add stream's transport takes the session's output. */
export interface AddSessionSink {
  /** Results that completed together (one group commit), as one response. */
  send(results: AddResultFields[]): void;
  /** Stop reading requests: over the stream's in-flight byte or add cap. */
  pause(): void;
  resume(): void;
  /** The peer ended and every add is answered: close the call with OK. */
  finish(): void;
}

/**
 * One AddEntries stream, whatever carries it (grpc-js, or the bookie's add
 * channel): adds go to the store as they arrive, results that complete in
 * the same turn leave together, and reading pauses while more than
 * `maxInFlightBytesPerStream` of payload, or more than
 * `maxInFlightAddsPerStream` adds, wait for the disk. Bytes alone do not
 * bound the queues: adds with empty payloads cost no bytes, but each holds
 * memory in the store and the journal until it settles. Reading resumes
 * once both are back under half their cap.
 */
export class AddSession {
  private inFlight = 0;
  private inFlightBytes = 0;
  private paused = false;
  private ended = false;
  private finished = false;
  private results: AddResultFields[] = [];
  private flushQueued = false;
  // Metrics of completed adds are applied once per response, not per add.
  private okAdds = 0;
  private okBytes = 0;
  private settled = 0;

  constructor(
    private readonly opts: Pick<
      BookieServiceOptions,
      'store' | 'metrics' | 'logger' | 'maxInFlightBytesPerStream' | 'maxInFlightAddsPerStream'
    >,
    private readonly sink: AddSessionSink,
  ) {}

  /**
   * Take one request's adds. `released` runs once per entry when the store
   * no longer needs its payload (the add settled): the caller may then
   * reuse the memory the payload sits in.
   */
  request(req: DecodedAddEntriesRequest, released?: () => void): void {
    if (this.finished) {
      for (let i = 0; i < req.entries.length; i++) released?.();
      return;
    }
    this.opts.metrics.inFlightAdds.inc(req.entries.length);
    for (const e of req.entries) this.add(e, req.recovery, released);
    if (
      !this.paused &&
      (this.inFlightBytes > this.opts.maxInFlightBytesPerStream ||
        this.inFlight > this.opts.maxInFlightAddsPerStream)
    ) {
      this.paused = true;
      this.sink.pause();
    }
  }

  /** The peer sent its last request. */
  end(): void {
    this.ended = true;
    this.finishIfDone();
  }

  /** The transport broke: nothing more is sent (adds in flight still settle). */
  abort(): void {
    this.ended = true;
    this.finished = true;
  }

  private add(
    e: DecodedAddEntriesRequest['entries'][number],
    recovery: boolean,
    released?: () => void,
  ): void {
    const { store, metrics, logger } = this.opts;
    const bytes = e.payload.length;
    this.inFlight++;
    this.inFlightBytes += bytes;
    const t0 = performance.now();
    const done = (out: Outcome) => {
      released?.();
      this.inFlight--;
      this.inFlightBytes -= bytes;
      this.settled++;
      if (out.status === 'OK') {
        this.okAdds++;
        this.okBytes += bytes;
        metrics.addLatencySeconds.observe((performance.now() - t0) / 1000);
      } else metrics.addsTotal.inc({ status: out.status });
      this.push({ ledgerId: e.ledgerId, entryId: e.entryId, status: wire(out.status), message: out.message });
      if (
        this.paused &&
        this.inFlightBytes <= this.opts.maxInFlightBytesPerStream / 2 &&
        this.inFlight <= this.opts.maxInFlightAddsPerStream / 2
      ) {
        this.paused = false;
        this.sink.resume();
      }
    };
    try {
      store.addThen(e, recovery, done);
    } catch (err) {
      logger.error({ err }, 'add failed unexpectedly');
      done({ status: 'IO_ERROR', message: (err as Error).message });
    }
  }

  private push(r: AddResultFields): void {
    this.results.push(r);
    if (!this.flushQueued) {
      this.flushQueued = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    const { metrics } = this.opts;
    this.flushQueued = false;
    if (this.okAdds > 0) {
      metrics.addsTotal.inc({ status: 'OK' }, this.okAdds);
      metrics.addBytesTotal.inc(this.okBytes);
    }
    if (this.settled > 0) metrics.inFlightAdds.dec(this.settled);
    this.okAdds = 0;
    this.okBytes = 0;
    this.settled = 0;
    if (this.results.length > 0 && !this.finished) this.sink.send(this.results);
    this.results = [];
    this.finishIfDone();
  }

  private finishIfDone(): void {
    if (this.finished || !this.ended || this.inFlight > 0 || this.results.length > 0) return;
    this.finished = true;
    this.sink.finish();
  }
}
