import type { MessageId } from '@sluice/common';
import test from 'ava';
import { type DeliveredMessageId, groupAcks } from './ack-grouping.js';

const delivered = (entryId: number, batchIndex: number, entrySize: number): DeliveredMessageId => ({
  ledgerId: 4,
  entryId,
  batchIndex,
  partition: -1,
  entrySize,
});

test('ack grouping - every message of an entry acked in a row becomes one entry id', (t) => {
  const ids = [0, 1, 2].map((i) => delivered(7, i, 3));
  t.deepEqual(groupAcks(ids), {
    entryIds: [{ ledgerId: 4, entryId: 7, batchIndex: 0, partition: -1 }],
    messageIds: [],
  });
});

test('ack grouping - an entry acked in part, or out of order across entries, stays per message', (t) => {
  const ids = [
    delivered(1, 0, 3),
    delivered(1, 2, 3),
    delivered(2, 1, 2),
    delivered(3, 0, 2),
    delivered(2, 0, 2),
  ];
  const g = groupAcks(ids);
  t.deepEqual(g.entryIds, []);
  t.deepEqual(
    g.messageIds.map((m) => `${m.entryId}:${m.batchIndex}`),
    ['1:0', '1:2', '2:1', '3:0', '2:0'],
  );
});

test('ack grouping - a whole entry acked in any order within its run counts; duplicates do not', (t) => {
  const shuffled = [2, 0, 1].map((i) => delivered(5, i, 3));
  const duplicated = [0, 0, 1].map((i) => delivered(6, i, 3));
  const g = groupAcks([...shuffled, ...duplicated]);
  t.deepEqual(
    g.entryIds.map((e) => e.entryId),
    [5],
  );
  t.is(g.messageIds.length, 3);
});

test('ack grouping - ids without an entry size (parsed from strings) stay per message', (t) => {
  const parsed: MessageId[] = [{ ledgerId: 4, entryId: 8, batchIndex: 0, partition: -1 }];
  t.deepEqual(groupAcks(parsed), { entryIds: [], messageIds: [parsed[0]] });
});
