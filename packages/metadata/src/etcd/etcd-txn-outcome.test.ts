import test from 'ava';
import type { Session, TxnOp } from '../metadata-store.js';
import { appliedOutcome, type StoredKey } from './etcd-txn-outcome.js';

const b = (s: string) => Buffer.from(s);
const session = (id: string): Session => ({
  id,
  ttlMs: 5000,
  lost: false,
  onLost: () => undefined,
  close: async () => undefined,
});
const mine = session('7587');

function state(keys: Record<string, Partial<StoredKey> & { value: Buffer }>) {
  return (key: string): StoredKey | undefined => {
    const k = keys[key];
    return k && { lease: '0', modRevision: 50, createRevision: 50, ...k };
  };
}

test('write outcome - a createOnly put bound to our session is ours when value and lease match', (t) => {
  const ops: TxnOp[] = [{ op: 'put', key: 'owner', value: b('broker-1'), createOnly: true, session: mine }];
  t.deepEqual(appliedOutcome(ops, state({ owner: { value: b('broker-1'), lease: '7587' } }), 60), {
    revision: 50,
    deleted: 0,
  });
  // Another session, another value, or a key rewritten since its creation: not proof.
  t.is(appliedOutcome(ops, state({ owner: { value: b('broker-1'), lease: '9999' } }), 60), undefined);
  t.is(appliedOutcome(ops, state({ owner: { value: b('broker-2'), lease: '7587' } }), 60), undefined);
  t.is(
    appliedOutcome(ops, state({ owner: { value: b('broker-1'), lease: '7587', createRevision: 40 } }), 60),
    undefined,
  );
  t.is(appliedOutcome(ops, state({}), 60), undefined);
});

test('write outcome - equal values without a session prove nothing', (t) => {
  // Two allocators that read the same counter both write {"next":200}; only one may believe it won.
  const ops: TxnOp[] = [{ op: 'put', key: 'idgen', value: b('{"next":200}'), expectedVersion: 30 }];
  t.is(appliedOutcome(ops, state({ idgen: { value: b('{"next":200}') } }), 60), undefined);
});

test('write outcome - a CAS put must have moved the key past the expected version', (t) => {
  const ops: TxnOp[] = [{ op: 'put', key: 'k', value: b('v2'), expectedVersion: 30, session: mine }];
  const at = (modRevision: number) =>
    appliedOutcome(ops, state({ k: { value: b('v2'), lease: '7587', modRevision, createRevision: 10 } }), 60);
  t.deepEqual(at(50), { revision: 50, deleted: 0 });
  t.is(at(30), undefined);
});

test('write outcome - a conditional delete is done when the key is gone', (t) => {
  const ops: TxnOp[] = [{ op: 'delete', key: 'cursor', expectedVersion: 12 }];
  t.deepEqual(appliedOutcome(ops, state({}), 60), { revision: 60, deleted: 1 });
  t.is(appliedOutcome(ops, state({ cursor: { value: b('x') } }), 60), undefined);
});

test('write outcome - a txn is applied only if all its puts share one revision and its checks still hold', (t) => {
  const ops: TxnOp[] = [
    { op: 'check', key: 'epoch', expectedVersion: 5 },
    { op: 'put', key: 'a', value: b('1'), createOnly: true, session: mine },
    { op: 'put', key: 'b', value: b('2'), session: mine },
    { op: 'delete', key: 'old', expectedVersion: 8 },
  ];
  const keys = {
    epoch: { value: b('e'), modRevision: 5, createRevision: 5 },
    a: { value: b('1'), lease: '7587' },
    b: { value: b('2'), lease: '7587', createRevision: 20 },
  };
  t.deepEqual(appliedOutcome(ops, state(keys), 60), { revision: 50, deleted: 1 });
  t.is(appliedOutcome(ops, state({ ...keys, b: { ...keys.b, modRevision: 55 } }), 60), undefined);
  t.is(appliedOutcome(ops, state({ ...keys, epoch: { ...keys.epoch, modRevision: 6 } }), 60), undefined);
  t.is(appliedOutcome(ops, state({ ...keys, old: { value: b('x') } }), 60), undefined);
});
