import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NotFoundError, OutOfRangeError } from '@sluice/common';
import { FilesystemOffloader, type OffloadEntry, type OffloadSource, openOffloader } from '@sluice/offload';
import test from 'ava';

function payload(ledgerId: number, entryId: number): Buffer {
  const size = entryId % 700 === 350 ? 1024 * 1024 : (entryId * 7919 + ledgerId) % 6000;
  const buf = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) buf[i] = (ledgerId * 7 + entryId * 31 + i) & 0xff;
  return buf;
}

function source(ledgerId: number, lastEntryId: number): OffloadSource {
  return {
    ledgerId,
    lastEntryId,
    metadata: { owner: 'standalone' },
    async readEntries(first, last) {
      const out: OffloadEntry[] = [];
      for (let id = first; id <= last; id++) out.push({ entryId: id, payload: payload(ledgerId, id) });
      return out;
    },
  };
}

test('offload filesystem - several ledgers round trip byte-identical through a fresh offloader', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-offload-fs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const writer = openOffloader(`file://${dir}/cold`);
  const ledgers = [
    { ledgerId: 100, last: 2499 },
    { ledgerId: 101, last: 0 },
    { ledgerId: 102, last: 999 },
  ];
  const uuids = new Map<number, string>();
  for (const { ledgerId, last } of ledgers) {
    const result = await writer.offload(source(ledgerId, last));
    uuids.set(ledgerId, result.uuid);
    t.is(statSync(join(dir, 'cold', `ledger-${ledgerId}`, `${result.uuid}.data`)).size, result.dataBytes);
  }
  await writer.close();
  const leftovers = readdirSync(join(dir, 'cold'), { recursive: true }).filter((f) =>
    String(f).includes('.tmp-'),
  );
  t.deepEqual(leftovers, [], 'no temp files after successful offloads');

  const reader = new FilesystemOffloader({ dir: join(dir, 'cold'), cacheBytes: 4 * 1024 * 1024 });
  t.teardown(() => reader.close());
  t.deepEqual(
    (await reader.list()).map((l) => [l.ledgerId, l.complete]),
    [
      [100, true],
      [101, true],
      [102, true],
    ],
  );
  for (const { ledgerId, last } of ledgers) {
    const r = await reader.openReader(ledgerId, uuids.get(ledgerId)!);
    const entries = await r.read(0, last);
    t.is(entries.length, last + 1);
    t.true(
      entries.every((e, i) => e.entryId === i && e.payload.equals(payload(ledgerId, i))),
      `ledger ${ledgerId} is byte-identical`,
    );
    await t.throwsAsync(r.read(last, last + 1), { instanceOf: OutOfRangeError });
    await r.close();
  }

  await reader.delete(101, uuids.get(101)!);
  await t.throwsAsync(reader.openReader(101, uuids.get(101)!), { instanceOf: NotFoundError });
  t.deepEqual(readdirSync(join(dir, 'cold', 'ledger-101')), []);
});
