import test from 'ava';
import {
  decodeReadEntriesResponse,
  type EntryStatusWireName,
  encodeReadEntriesResponse,
  loadProto,
  type ReadEntriesChunk,
  type ReadEntriesResponse__Output,
  type ReadEntryFields,
} from './index.js';
import { EDGE_ENTRIES, UNKNOWN_FIELDS } from './test-support/edge-entries.js';

interface ReadEntriesMethod {
  responseSerialize(res: object): Buffer;
  responseDeserialize(buf: Buffer): ReadEntriesResponse__Output;
}

/** The protobufjs codec grpc-js used before (proto-loader with LOADER_OPTIONS). */
const method = (
  loadProto('bookie.proto') as unknown as {
    sluice: { v1: { BookieService: { service: { ReadEntries: ReadEntriesMethod } } } };
  }
).sluice.v1.BookieService.service.ReadEntries;

const entries: ReadEntryFields[] = EDGE_ENTRIES;

/** Named statuses only, so that both codecs' output compares directly. */
const chunks: { name: string; chunk: ReadEntriesChunk & { stoppedBy?: EntryStatusWireName } }[] = [
  { name: 'entries', chunk: { entries } },
  { name: 'empty', chunk: { entries: [] } },
  {
    name: 'stopped early',
    chunk: { entries: entries.slice(0, 2), stoppedBy: 'ENTRY_STATUS_NO_ENTRY', stoppedAt: 128 },
  },
  {
    name: 'stopped at once',
    chunk: { entries: [], stoppedBy: 'ENTRY_STATUS_CORRUPT', stoppedAt: 2 ** 53 - 1 },
  },
  { name: 'stopped at 0', chunk: { entries: [], stoppedBy: 'ENTRY_STATUS_NO_LEDGER', stoppedAt: 0 } },
];

const plain = (e: ReadEntryFields) => ({ ...e, payload: Buffer.from(e.payload) });

for (const { name, chunk } of chunks) {
  test(`read-entries codec - response decodes with protobufjs (${name})`, (t) => {
    const decoded = method.responseDeserialize(encodeReadEntriesResponse(chunk));
    t.is(decoded.stoppedBy, chunk.stoppedBy ?? 'ENTRY_STATUS_UNSPECIFIED');
    t.is(Number(decoded.stoppedAt), chunk.stoppedAt ?? 0);
    t.deepEqual(
      decoded.entries.map((d) => ({
        ledgerId: Number(d.ledgerId),
        entryId: Number(d.entryId),
        lac: Number(d.lac),
        crc32c: d.crc32c,
        ledgerLength: Number(d.ledgerLength),
        payload: Buffer.from(d.payload),
      })),
      chunk.entries.map(plain),
    );
  });

  test(`read-entries codec - response from protobufjs decodes (${name})`, (t) => {
    const decoded = decodeReadEntriesResponse(method.responseSerialize(chunk));
    t.is(decoded.stoppedBy, chunk.stoppedBy ?? 'ENTRY_STATUS_UNSPECIFIED');
    t.is(decoded.stoppedAt, chunk.stoppedAt ?? 0);
    t.deepEqual(decoded.entries.map(plain), chunk.entries.map(plain));
  });
}

test('read-entries codec - decoded payloads are slices of the message, not copies', (t) => {
  const wire = encodeReadEntriesResponse({ entries: [entries[1]!, entries[3]!] });
  const [a, b] = decodeReadEntriesResponse(wire).entries;
  t.is(a!.payload.buffer, wire.buffer);
  t.is(b!.payload.buffer, wire.buffer);
  wire[wire.indexOf('hello') + 4] = 0x21;
  t.is(a!.payload.toString(), 'hell!');
});

test('read-entries codec - numeric and unknown statuses', (t) => {
  const numeric = encodeReadEntriesResponse({ entries: [], stoppedBy: 3, stoppedAt: 9 });
  t.is(decodeReadEntriesResponse(numeric).stoppedBy, 'ENTRY_STATUS_NO_ENTRY');
  const future = encodeReadEntriesResponse({ entries: [], stoppedBy: 42, stoppedAt: 9 });
  t.is(decodeReadEntriesResponse(future).stoppedBy, '42');
  t.throws(() => encodeReadEntriesResponse({ entries: [], stoppedBy: 'NOPE' as 'ENTRY_STATUS_OK' }), {
    instanceOf: RangeError,
  });
});

test('read-entries codec - unknown fields are skipped', (t) => {
  // Unknown field 9 of every wire type, before and after a real chunk.
  const unknown = UNKNOWN_FIELDS;
  const real = encodeReadEntriesResponse({
    entries: [entries[1]!],
    stoppedBy: 'ENTRY_STATUS_NO_ENTRY',
    stoppedAt: 128,
  });
  const d = decodeReadEntriesResponse(Buffer.concat([unknown, real, unknown]));
  t.deepEqual(d.entries.map(plain), [plain(entries[1]!)]);
  t.is(d.stoppedBy, 'ENTRY_STATUS_NO_ENTRY');
  t.is(d.stoppedAt, 128);
});

test('read-entries codec - truncated responses are rejected', (t) => {
  const wire = encodeReadEntriesResponse({ entries: [entries[2]!] });
  t.throws(() => decodeReadEntriesResponse(wire.subarray(0, wire.length - 1)), { instanceOf: RangeError });
  t.throws(() => decodeReadEntriesResponse(wire.subarray(0, 3)), { instanceOf: RangeError });
});

test('read-entries codec - ids that are not safe integers are refused', (t) => {
  t.throws(() => encodeReadEntriesResponse({ entries: [{ ...entries[1]!, entryId: 2 ** 53 }] }), {
    instanceOf: RangeError,
  });
  t.throws(() => encodeReadEntriesResponse({ entries: [{ ...entries[1]!, lac: 0.5 }] }), {
    instanceOf: RangeError,
  });
});
