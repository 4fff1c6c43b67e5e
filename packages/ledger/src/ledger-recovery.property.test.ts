/**
 * Property: under injected faults (drops, delays, slow fsync, crashes,
 * restarts, lost fences), whatever a writer was told is stored survives
 * recovery with the same bytes in the same order, nothing past lastEntryId
 * is readable, and concurrent recoveries agree.
 *
 * SLUICE_PROPERTY_RUNS sets the number of runs (default 30); FC_SEED and
 * FC_PATH replay a reported counterexample.
 */
import { OutOfRangeError } from '@sluice/common';
import test from 'ava';
import fc from 'fast-check';
import { MemoryCluster } from './testing/memory-cluster.js';

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const quorums = fc.constantFrom([3, 3, 2], [3, 2, 2], [3, 3, 3], [3, 2, 1], [4, 3, 2]);

const scenario = fc.record({
  seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
  quorum: quorums,
  entries: fc.integer({ min: 5, max: 40 }),
  tailEntries: fc.integer({ min: 0, max: 10 }),
  delayMs: fc.integer({ min: 0, max: 4 }),
  fsyncMs: fc.integer({ min: 0, max: 6 }),
  dropRate: fc.constantFrom(0, 0, 0.01, 0.03),
  fenceDropRate: fc.constantFrom(0, 0.3, 0.6),
  crashes: fc.array(
    fc.record({ at: fc.integer({ min: 0, max: 39 }), bookie: fc.integer({ min: 0, max: 5 }) }),
    {
      maxLength: 3,
    },
  ),
  restartAfter: fc.integer({ min: 1, max: 10 }),
  mode: fc.constantFrom('recover', 'recover', 'close'),
  size: fc.integer({ min: 0, max: 300 }),
});

const body = (id: number, size: number) => Buffer.alloc(size + (id % 7), `${id}|`);

test('ledger - acknowledged entries survive recovery under injected faults', async (t) => {
  await fc.assert(
    fc.asyncProperty(scenario, async (s) => {
      const [E, Qw, Qa] = s.quorum as [number, number, number];
      const c = await MemoryCluster.start(
        6,
        { delayMs: s.delayMs, fsyncMs: s.fsyncMs, dropRate: s.dropRate, timeoutMs: 20 },
        mulberry32(s.seed),
      );
      try {
        const writer = await c
          .client({ maxPendingAdds: 8 })
          .createLedger({ ensembleSize: E, writeQuorum: Qw, ackQuorum: Qa });
        const acked = new Map<number, Buffer>();
        const sent: Buffer[] = [];
        const add = (i: number) => {
          const p = body(i, s.size);
          sent.push(p);
          return writer.addEntry(p).then(
            (id) => {
              acked.set(id, p);
            },
            () => undefined,
          );
        };
        const inflight: Promise<void>[] = [];
        const crashed = new Set<number>();
        for (let i = 0; i < s.entries; i++) {
          for (const cr of s.crashes) {
            if (cr.at === i) {
              c.bookies[cr.bookie]?.crash();
              crashed.add(cr.bookie);
            }
            if (cr.at + s.restartAfter === i) {
              c.bookies[cr.bookie]?.restart();
              crashed.delete(cr.bookie);
            }
          }
          inflight.push(add(i));
          if (i % 4 === 3) await Promise.race([Promise.all(inflight), new Promise((r) => setTimeout(r, 5))]);
        }
        // Bring every bookie back but one (recovery replaces it where fewer
        // than Qa copies of an entry could be written), lose some fences.
        for (const b of crashed) c.bookies[b]?.restart();
        if (Qa >= 2 && crashed.size > 0) c.bookies[[...crashed][0] as number]?.crash();
        for (const b of c.bookies) b.faults.fenceDropRate = s.fenceDropRate;

        let lastEntryId: number;
        let length: number;
        if (s.mode === 'close') {
          await Promise.all(inflight);
          const m = await writer.close();
          lastEntryId = m.lastEntryId;
          length = m.length;
          t.is(lastEntryId, acked.size - 1);
        } else {
          // The old writer keeps writing while two recoveries race.
          const tail = Array.from({ length: s.tailEntries }, (_, k) => add(s.entries + k));
          const [r1, r2] = await Promise.all([
            c.client({ recoveryTimeoutMs: 30_000 }).openLedger(writer.ledgerId, { recover: true }),
            c.client({ recoveryTimeoutMs: 30_000 }).openLedger(writer.ledgerId, { recover: true }),
          ]);
          await Promise.all([...inflight, ...tail]);
          t.is(r1.metadata.lastEntryId, r2.metadata.lastEntryId, 'concurrent recoveries agree');
          t.is(r1.metadata.length, r2.metadata.length);
          lastEntryId = r1.metadata.lastEntryId;
          length = r1.metadata.length;
          const late = await writer.addEntry(Buffer.from('late')).then(
            () => 'acked',
            () => 'refused',
          );
          t.is(late, 'refused', 'the old writer can no longer add');
        }
        // Acknowledgements are in order: the acked ids form a prefix.
        const ids = [...acked.keys()].sort((a, b) => a - b);
        t.deepEqual(
          ids,
          ids.map((_, i) => i),
        );
        t.true(lastEntryId >= ids.length - 1, `lastEntryId ${lastEntryId} covers ${ids.length} acked`);
        for (const b of c.bookies) b.faults = { ...b.faults, dropRate: 0, fenceDropRate: 0, delayMs: 0 };
        const reader = await c.client().openLedger(writer.ledgerId);
        t.is(reader.lastAddConfirmed, lastEntryId);
        if (lastEntryId >= 0) {
          const entries = await reader.read(0, lastEntryId);
          entries.forEach((e, i) => {
            t.is(e.entryId, i);
            t.true(e.payload.equals(sent[i] as Buffer), `entry ${i} has the bytes that were sent`);
          });
          t.is(
            length,
            entries.reduce((n, e) => n + e.payload.length, 0),
          );
        }
        await t.throwsAsync(reader.read(lastEntryId + 1, lastEntryId + 1), { instanceOf: OutOfRangeError });
      } catch (err) {
        t.log(err);
        throw err;
      } finally {
        await c.stop();
      }
    }),
    {
      numRuns: Number(process.env.SLUICE_PROPERTY_RUNS ?? 30),
      interruptAfterTimeLimit: 45_000,
      verbose: 1,
      ...(process.env.FC_SEED ? { seed: Number(process.env.FC_SEED), path: process.env.FC_PATH } : {}),
    },
  );
  t.pass();
});
