import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { crc32c, createLogger, createRegistry } from '@sluice/common';
import {
  ADD_CHANNEL_PREFACE,
  AddChannelFrame,
  AddChannelFrameReader,
  addChannelHeader,
  type DecodedAddEntry,
  decodeAddChannelStatus,
  decodeAddEntriesResponse,
  EncodedEntry,
  encodeAddEntriesRequest,
} from '@sluice/proto';
import test from 'ava';
import fc from 'fast-check';
import { AddChannel, SlabPool } from './add-channel-server.js';
import type { BookieStore, Outcome } from './bookie-store.js';
import { createBookieMetrics } from './metrics.js';

/** What AddChannel uses of a socket; records what it writes. */
class FakeSocket extends EventEmitter {
  readonly written: Buffer[] = [];
  ended = false;
  paused = false;
  cork(): void {}
  uncork(): void {}
  write(b: Buffer): boolean {
    this.written.push(Buffer.from(b));
    return true;
  }
  end(b?: Buffer): void {
    if (b) this.written.push(Buffer.from(b));
    this.ended = true;
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  destroy(): void {}

  frames(): { kind: number; body: Buffer }[] {
    return new AddChannelFrameReader(1 << 30).push(Buffer.concat(this.written));
  }
}

/** A store that holds adds until the test settles them, checking each payload at that moment. */
class HoldingStore {
  readonly held: { e: DecodedAddEntry; done: (o: Outcome) => void }[] = [];
  corrupt = 0;
  settled = 0;
  constructor(private readonly expected: Map<number, Buffer>) {}
  addThen(e: DecodedAddEntry, _recovery: boolean, done: (o: Outcome) => void): void {
    this.held.push({ e, done });
  }
  settle(pick: (i: number) => boolean): void {
    const keep: typeof this.held = [];
    this.held.forEach((h, i) => {
      if (!pick(i)) {
        keep.push(h);
        return;
      }
      // The payload is still a slice of the channel's slab here: it must hold the bytes sent.
      if (!h.e.payload.equals(this.expected.get(h.e.entryId)!)) this.corrupt++;
      this.settled++;
      h.done({ status: 'OK', message: '' });
    });
    this.held.splice(0, this.held.length, ...keep);
  }
}

function channel(
  store: HoldingStore,
  pool: SlabPool,
  maxInFlightBytesPerStream = 1 << 30,
  maxInFlightAddsPerStream = 1 << 20,
) {
  const socket = new FakeSocket();
  const ch = new AddChannel(pool, {
    store: store as unknown as BookieStore,
    metrics: createBookieMetrics(createRegistry(false)),
    logger: createLogger('test'),
    maxInFlightBytesPerStream,
    maxInFlightAddsPerStream,
  });
  ch.attach(socket as unknown as Socket);
  return { ch, socket };
}

const flushImmediates = () => new Promise((resolve) => setImmediate(resolve));

test('add channel - payloads stay intact until they settle, however the bytes are split and whenever adds settle', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      // Requests of entries from 1 byte to 300 KiB (one slab is 192 KiB here), now and then one of 600 KiB.
      fc.array(
        fc.array(fc.oneof(fc.integer({ min: 1, max: 300 * 1024 }), fc.constant(600 * 1024)), {
          minLength: 1,
          maxLength: 4,
        }),
        {
          minLength: 1,
          maxLength: 8,
        },
      ),
      fc.array(fc.integer({ min: 1, max: 256 * 1024 }), { minLength: 1, maxLength: 16 }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      fc.integer(),
      async (requests, cuts, settleShare, seed) => {
        const expected = new Map<number, Buffer>();
        const parts: Buffer[] = [ADD_CHANNEL_PREFACE];
        let id = 0;
        for (const sizes of requests) {
          const entries = sizes.map((size) => {
            const payload = Buffer.alloc(size, (id * 31 + seed) & 0xff);
            if (size >= 4) payload.writeUInt32LE(id, 0);
            expected.set(id, payload);
            return new EncodedEntry(
              { ledgerId: 1, entryId: id++, lac: -1, crc32c: crc32c(payload), ledgerLength: 0 },
              payload,
            );
          });
          const body = encodeAddEntriesRequest(entries, false);
          parts.push(addChannelHeader(AddChannelFrame.REQUEST, body.length), body);
        }
        const bytes = Buffer.concat(parts);
        const store = new HoldingStore(expected);
        const pool = new SlabPool(192 * 1024, 2);
        const { ch, socket } = channel(store, pool);
        let at = 0;
        let k = 0;
        let tick = 0;
        while (at < bytes.length) {
          const n = Math.min(cuts[k++ % cuts.length]!, bytes.length - at);
          ch.receivedChunk(bytes.subarray(at, at + n));
          at += n;
          // Settle some of what is held: slabs free up and get reused while others are still referenced.
          store.settle((i) => ((i + tick++) * 0.618) % 1 < settleShare);
        }
        store.settle(() => true);
        ch.peerEnded();
        await flushImmediates();
        await flushImmediates();
        const frames = socket.frames();
        const results = frames
          .filter((f) => f.kind === AddChannelFrame.RESPONSE)
          .flatMap((f) => decodeAddEntriesResponse(f.body).results);
        const status = frames.at(-1);
        ch.broken();
        return (
          store.corrupt === 0 &&
          store.settled === expected.size &&
          results.length === expected.size &&
          results.every((r) => r.status === 'ENTRY_STATUS_OK') &&
          status?.kind === AddChannelFrame.STATUS &&
          decodeAddChannelStatus(status.body).code === 0 &&
          pool.outstanding === 0
        );
      },
    ),
    { numRuns: 60 },
  );
  t.pass();
});

test('add channel - over the in-flight byte cap the channel pauses reading, and resumes once adds settle', async (t) => {
  const payload = Buffer.alloc(100 * 1024, 1);
  const expected = new Map<number, Buffer>();
  const entries = Array.from({ length: 4 }, (_, i) => {
    expected.set(i, payload);
    return new EncodedEntry(
      { ledgerId: 1, entryId: i, lac: -1, crc32c: crc32c(payload), ledgerLength: 0 },
      payload,
    );
  });
  const body = encodeAddEntriesRequest(entries, false);
  const store = new HoldingStore(expected);
  const { ch, socket } = channel(store, new SlabPool(), 256 * 1024);
  ch.receivedChunk(
    Buffer.concat([ADD_CHANNEL_PREFACE, addChannelHeader(AddChannelFrame.REQUEST, body.length), body]),
  );
  t.true(socket.paused);
  store.settle((i) => i < 2);
  t.true(socket.paused, 'still over half the cap');
  store.settle(() => true);
  t.false(socket.paused);
  t.is(store.corrupt, 0);
});

test('add channel - over the in-flight add cap the channel pauses reading, even for adds with empty payloads', async (t) => {
  const payload = Buffer.alloc(0);
  const expected = new Map<number, Buffer>();
  const entries = Array.from({ length: 10 }, (_, i) => {
    expected.set(i, payload);
    return new EncodedEntry(
      { ledgerId: 1, entryId: i, lac: -1, crc32c: crc32c(payload), ledgerLength: 0 },
      payload,
    );
  });
  const body = encodeAddEntriesRequest(entries, false);
  const store = new HoldingStore(expected);
  // No payload bytes in flight ever: only the count can stop the reading.
  const { ch, socket } = channel(store, new SlabPool(), 256 * 1024, 4);
  ch.receivedChunk(
    Buffer.concat([ADD_CHANNEL_PREFACE, addChannelHeader(AddChannelFrame.REQUEST, body.length), body]),
  );
  t.is(store.held.length, 10);
  t.true(socket.paused, '10 adds in flight, over the cap of 4');
  store.settle((i) => i < 7);
  t.true(socket.paused, 'still over half the cap');
  store.settle((i) => i < 1);
  t.false(socket.paused, 'two left: reading resumes');
  store.settle(() => true);
  t.false(socket.paused);
});

test('add channel - a connection that is not an add channel gets INVALID_ARGUMENT and nothing is stored', async (t) => {
  const store = new HoldingStore(new Map());
  const { ch, socket } = channel(store, new SlabPool());
  ch.receivedChunk(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
  const last = socket.frames().at(-1)!;
  t.is(last.kind, AddChannelFrame.STATUS);
  t.is(decodeAddChannelStatus(last.body).code, 3);
  t.true(socket.ended);
  t.is(store.held.length, 0);
});
