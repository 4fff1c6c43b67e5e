import test from 'ava';
import {
  type AddEntriesRequest__Output,
  type AddEntriesResponse__Output,
  type AddResultFields,
  addEntriesRequestLength,
  addEntriesRequestParts,
  decodeAddEntriesRequest,
  decodeAddEntriesResponse,
  EncodedEntry,
  encodeAddEntriesRequest,
  encodeAddEntriesResponse,
  loadProto,
} from './index.js';
import { EDGE_ENTRIES, UNKNOWN_FIELDS } from './test-support/edge-entries.js';

interface AddEntriesMethod {
  requestSerialize(req: object): Buffer;
  requestDeserialize(buf: Buffer): AddEntriesRequest__Output;
  responseSerialize(res: object): Buffer;
  responseDeserialize(buf: Buffer): AddEntriesResponse__Output;
}

/** The protobufjs codec grpc-js used before (proto-loader with LOADER_OPTIONS). */
const method = (
  loadProto('bookie.proto') as unknown as {
    sluice: { v1: { BookieService: { service: { AddEntries: AddEntriesMethod } } } };
  }
).sluice.v1.BookieService.service.AddEntries;

const entries = EDGE_ENTRIES;

for (const recovery of [false, true]) {
  test(`add-entries codec - request decodes with protobufjs (recovery ${recovery})`, (t) => {
    const encoded = entries.map((e) => new EncodedEntry(e, e.payload));
    const wire = encodeAddEntriesRequest(encoded, recovery);
    const decoded = method.requestDeserialize(wire);
    t.is(decoded.recovery, recovery);
    t.is(decoded.entries.length, entries.length);
    decoded.entries.forEach((d, i) => {
      const e = entries[i]!;
      t.is(Number(d.ledgerId), e.ledgerId);
      t.is(Number(d.entryId), e.entryId);
      t.is(Number(d.lac), e.lac);
      t.is(d.crc32c, e.crc32c);
      t.is(Number(d.ledgerLength), e.ledgerLength);
      t.true(Buffer.from(d.payload).equals(e.payload));
    });
  });

  test(`add-entries codec - request parts are the same bytes, payloads not copied (recovery ${recovery})`, (t) => {
    const split = Buffer.from('0123456789');
    const encoded = [
      ...entries.map((e) => new EncodedEntry(e, e.payload)),
      new EncodedEntry({ ...entries[0]!, entryId: 99 }, [
        split.subarray(0, 4),
        Buffer.alloc(0),
        split.subarray(4),
      ]),
    ];
    const parts = addEntriesRequestParts(encoded, recovery);
    t.true(Buffer.concat(parts).equals(encodeAddEntriesRequest(encoded, recovery)));
    t.is(Buffer.concat(parts).length, addEntriesRequestLength(encoded, recovery));
    t.true(parts.includes(entries[1]!.payload), 'a payload goes out as the Buffer it was given');
    t.false(
      parts.some((p) => p.length === 0),
      'empty parts are left out',
    );
  });

  test(`add-entries codec - request from protobufjs decodes (recovery ${recovery})`, (t) => {
    const wire = method.requestSerialize({ entries, recovery });
    const decoded = decodeAddEntriesRequest(wire);
    t.is(decoded.recovery, recovery);
    t.deepEqual(
      decoded.entries.map((e) => ({ ...e, payload: Buffer.from(e.payload) })),
      entries.map((e) => ({ ...e })),
    );
  });
}

test('add-entries codec - payload parts are joined and the head is reusable', (t) => {
  const e = { ledgerId: 3, entryId: 9, lac: 8, crc32c: 77, ledgerLength: 1000 };
  const parts = [Buffer.from('head-'), Buffer.alloc(0), Buffer.from('payload')];
  const once = new EncodedEntry(e, parts);
  t.is(once.payloadLength, 12);
  const a = encodeAddEntriesRequest([once], false);
  const b = encodeAddEntriesRequest([once, once], false);
  t.true(b.equals(Buffer.concat([a, a])));
  const d = method.requestDeserialize(a);
  t.is(d.entries[0]!.payload.toString(), 'head-payload');
  t.is(decodeAddEntriesRequest(a).entries[0]!.payload.toString(), 'head-payload');
});

test('add-entries codec - decoded payloads are slices of the message, not copies', (t) => {
  const wire = encodeAddEntriesRequest([new EncodedEntry(entries[1]!, entries[1]!.payload)], false);
  const [d] = decodeAddEntriesRequest(wire).entries;
  t.is(d!.payload.buffer, wire.buffer);
  wire[wire.length - 1] = 0x21;
  t.is(d!.payload.toString(), 'hell!');
});

test('add-entries codec - empty request and unknown fields', (t) => {
  t.deepEqual(decodeAddEntriesRequest(Buffer.alloc(0)), { entries: [], recovery: false });
  t.is(method.requestDeserialize(encodeAddEntriesRequest([], false)).entries.length, 0);
  // Unknown field 9 of every wire type before a real entry: skipped.
  const unknown = UNKNOWN_FIELDS;
  const real = encodeAddEntriesRequest([new EncodedEntry(entries[1]!, entries[1]!.payload)], true);
  const d = decodeAddEntriesRequest(Buffer.concat([unknown, real]));
  t.is(d.entries.length, 1);
  t.is(d.entries[0]!.entryId, 127);
  t.true(d.recovery);
});

test('add-entries codec - truncated requests are rejected', (t) => {
  const wire = encodeAddEntriesRequest([new EncodedEntry(entries[2]!, entries[2]!.payload)], false);
  t.throws(() => decodeAddEntriesRequest(wire.subarray(0, wire.length - 1)), { instanceOf: RangeError });
  t.throws(() => decodeAddEntriesRequest(wire.subarray(0, 3)), { instanceOf: RangeError });
});

test('add-entries codec - ids that are not safe integers are refused', (t) => {
  t.throws(() => new EncodedEntry({ ...entries[1]!, entryId: 2 ** 53 }, Buffer.alloc(0)), {
    instanceOf: RangeError,
  });
  t.throws(() => new EncodedEntry({ ...entries[1]!, lac: 0.5 }, Buffer.alloc(0)), { instanceOf: RangeError });
});

const results: AddResultFields[] = [
  { ledgerId: 0, entryId: 0, status: 'ENTRY_STATUS_OK', message: '' },
  { ledgerId: 2 ** 53 - 1, entryId: 2 ** 35, status: 'ENTRY_STATUS_FENCED', message: 'ledger 9 is fenced' },
  { ledgerId: 5, entryId: 1, status: 'ENTRY_STATUS_INVALID', message: 'CRC32C mismatch: ünïcode ✓' },
  { ledgerId: 5, entryId: 2, status: 'ENTRY_STATUS_IO_ERROR', message: '' },
  { ledgerId: 5, entryId: 3, status: 'ENTRY_STATUS_UNSPECIFIED', message: '' },
];

test('add-entries codec - response decodes with protobufjs', (t) => {
  const decoded = method.responseDeserialize(encodeAddEntriesResponse(results));
  t.deepEqual(
    decoded.results.map((r) => ({ ...r, ledgerId: Number(r.ledgerId), entryId: Number(r.entryId) })),
    results,
  );
});

test('add-entries codec - response from protobufjs decodes', (t) => {
  t.deepEqual(decodeAddEntriesResponse(method.responseSerialize({ results })).results, results);
  t.deepEqual(decodeAddEntriesResponse(Buffer.alloc(0)).results, []);
});

test('add-entries codec - numeric and unknown statuses', (t) => {
  const wire = encodeAddEntriesResponse([{ ledgerId: 1, entryId: 2, status: 2 }]);
  t.is(decodeAddEntriesResponse(wire).results[0]!.status, 'ENTRY_STATUS_FENCED');
  const future = encodeAddEntriesResponse([{ ledgerId: 1, entryId: 2, status: 42 }]);
  t.is(decodeAddEntriesResponse(future).results[0]!.status, '42');
  t.throws(
    () => encodeAddEntriesResponse([{ ledgerId: 1, entryId: 2, status: 'NOPE' as 'ENTRY_STATUS_OK' }]),
    {
      instanceOf: RangeError,
    },
  );
});

test('add-entries codec - results echo ids that are not safe integers', (t) => {
  const wire = encodeAddEntriesResponse([
    { ledgerId: 2 ** 60, entryId: -5, status: 'ENTRY_STATUS_INVALID', message: 'bad id' },
  ]);
  const [r] = method.responseDeserialize(wire).results;
  t.is(Number(r!.ledgerId), 2 ** 60);
  t.is(Number(r!.entryId), -5);
  t.deepEqual(decodeAddEntriesResponse(wire).results[0], {
    ledgerId: 2 ** 60,
    entryId: -5,
    status: 'ENTRY_STATUS_INVALID',
    message: 'bad id',
  });
});
