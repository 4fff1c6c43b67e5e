import { crc32c } from '@sluice/common';
import test from 'ava';
import fc from 'fast-check';
import { decodeEntry, ENTRY_HEADER_BYTES, writeEntryHeader } from './entry-log.js';
import {
  decodeRecord,
  JOURNAL_HEADER_BYTES,
  type JournalRecord,
  RecordType,
  refLocation,
  refRecord,
  writeRecordHeader,
} from './journal-record.js';

const id = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const fields = fc.record({
  ledgerId: id,
  entryId: id,
  lac: fc.integer({ min: -1, max: Number.MAX_SAFE_INTEGER }),
  ledgerLength: id,
  payload: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
});
const location = fc.record({
  logId: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  offset: id,
  length: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
});

// The headers are built in shared scratch memory: records written one after
// another must not carry anything over from the one before.
test('journal record - records written back to back decode to what was written, ADD_REF locations included', (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fields, fc.option(location, { nil: undefined })), { minLength: 1, maxLength: 12 }),
      fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      (items, fileId) => {
        const recs: JournalRecord[] = items.map(([f, loc]) => {
          const crc = crc32c(f.payload);
          return loc
            ? refRecord({ ...f, crc32c: crc }, loc)
            : { ...f, type: RecordType.ADD, payloadCrc: crc };
        });
        const buf = Buffer.alloc(recs.reduce((n, r) => n + JOURNAL_HEADER_BYTES + r.payload.length, 0));
        let at = 0;
        for (const r of recs) {
          writeRecordHeader(buf, at, r, r.payload.length, fileId);
          at += JOURNAL_HEADER_BYTES;
          at += r.payload.copy(buf, at);
        }
        at = 0;
        for (const [i, r] of recs.entries()) {
          const d = decodeRecord(buf, at, fileId);
          if (!d.ok) return false;
          t.deepEqual({ ...d.record, payload: Buffer.from(d.record.payload) }, { ...r }, `record ${i}`);
          const loc = items[i]![1];
          if (loc) t.deepEqual(refLocation(d.record.payload), loc);
          at += d.size;
        }
        return at === buf.length;
      },
    ),
  );
});

test('journal record - entry headers written back to back decode to what was written', (t) => {
  fc.assert(
    fc.property(fc.array(fields, { minLength: 1, maxLength: 12 }), (entries) => {
      const stored = entries.map((e) => ({ ...e, crc32c: crc32c(e.payload) }));
      const records = stored.map((e) => {
        const buf = Buffer.alloc(ENTRY_HEADER_BYTES + e.payload.length);
        writeEntryHeader(buf, 0, e, e.payload.length);
        e.payload.copy(buf, ENTRY_HEADER_BYTES);
        return buf;
      });
      for (const [i, e] of stored.entries()) {
        const d = decodeEntry(records[i]!, e.ledgerId, e.entryId);
        if (!d.ok) return false;
        t.deepEqual({ ...d.entry, payload: Buffer.from(d.entry.payload) }, e, `entry ${i}`);
      }
      return true;
    }),
  );
});
