/** Entries at the edges of every field (ids, LAC -1, CRC bit patterns, payload sizes) for the codec tests. */
export const EDGE_ENTRIES = [
  { ledgerId: 0, entryId: 0, lac: -1, crc32c: 0, ledgerLength: 0, payload: Buffer.alloc(0) },
  {
    ledgerId: 7,
    entryId: 127,
    lac: 126,
    crc32c: 0xffffffff,
    ledgerLength: 128,
    payload: Buffer.from('hello'),
  },
  {
    ledgerId: 2 ** 53 - 1,
    entryId: 2 ** 40 + 3,
    lac: 2 ** 32,
    crc32c: 0x80000001,
    ledgerLength: 2 ** 53 - 1,
    payload: Buffer.alloc(70_000, 0xab),
  },
  {
    ledgerId: 300,
    entryId: 16_384,
    lac: 16_383,
    crc32c: 12345,
    ledgerLength: 2 ** 31,
    payload: Buffer.from([0, 1, 2, 3]),
  },
];

/** Field 9, unknown to every bookie message, once in each wire type (varint, 64-bit, bytes, 32-bit). */
export const UNKNOWN_FIELDS = Buffer.from([
  (9 << 3) | 0,
  0x96,
  0x01,
  (9 << 3) | 1,
  ...Buffer.alloc(8),
  (9 << 3) | 2,
  2,
  0xaa,
  0xbb,
  (9 << 3) | 5,
  ...Buffer.alloc(4),
]);
