import { AlreadyExistsError, BadVersionError, UnavailableError } from '@sluice/common';
import test from 'ava';
import { GRPCDeadlineExceededError, GRPCInvalidArgumentError, GRPCUnavailableError } from 'etcd3';
import { mayHaveApplied, neverReachedEtcd, retryEtcdCall } from './etcd-retry.js';

// Messages as grpc-js words them (etcd3 keeps only the message).
const timedOutAfterSending = () =>
  new GRPCDeadlineExceededError(
    '4 DEADLINE_EXCEEDED: Deadline exceeded after 5.001s,LB pick: 0.001s,remote_addr=127.0.0.1:2379',
  );
const timedOutConnecting = () =>
  new GRPCDeadlineExceededError('4 DEADLINE_EXCEEDED: Deadline exceeded after 5.001s,Waiting for LB pick');
const refused = () =>
  new GRPCUnavailableError(
    '14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 127.0.0.1:2379',
  );
const dropped = () => new GRPCUnavailableError('14 UNAVAILABLE: Connection dropped');
const etcdTimedOut = () => new GRPCUnavailableError('14 UNAVAILABLE: etcdserver: request timed out');

/** An attempt function answering from a script, counting calls. */
function scripted<T>(...steps: (T | Error)[]) {
  const f = async (): Promise<T> => {
    const step = steps[f.calls++];
    if (step === undefined) throw new Error('attempt called too often');
    if (step instanceof Error) throw step;
    return step;
  };
  f.calls = 0;
  return f;
}

test('etcd retry - failures are sorted into never sent and maybe applied', (t) => {
  t.true(neverReachedEtcd(refused()));
  t.true(neverReachedEtcd(timedOutConnecting()));
  for (const err of [timedOutAfterSending(), dropped(), etcdTimedOut()]) {
    t.false(neverReachedEtcd(err), err.message);
    t.true(mayHaveApplied(err), err.message);
  }
  // Not transient at all: neither.
  const invalid = new GRPCInvalidArgumentError(
    '3 INVALID_ARGUMENT: etcdserver: duplicate key given in txn request',
  );
  t.false(neverReachedEtcd(invalid));
  t.false(mayHaveApplied(invalid));
  t.false(mayHaveApplied(new BadVersionError('x')));
  t.false(mayHaveApplied('not an error'));
});

test('etcd retry - reads and unconditional writes retry a maybe-applied failure, within the attempts', async (t) => {
  const ok = scripted<string>(timedOutAfterSending(), dropped(), 'value');
  t.is(await retryEtcdCall(ok, { what: 'get', attempts: 3 }), 'value');
  t.is(ok.calls, 3);
  const exhausted = scripted<string>(timedOutAfterSending(), timedOutAfterSending());
  await t.throwsAsync(retryEtcdCall(exhausted, { what: 'get', attempts: 2 }), {
    instanceOf: GRPCDeadlineExceededError,
  });
  // The etcd3 client already tried every member for a failure that never left this process.
  const neverSent = scripted<string>(refused(), 'value');
  await t.throwsAsync(retryEtcdCall(neverSent, { what: 'get', attempts: 3 }), {
    instanceOf: GRPCUnavailableError,
  });
  t.is(neverSent.calls, 1);
});

test('etcd retry - a conditional write applied by a timed-out attempt succeeds when the state proves it', async (t) => {
  const write = scripted<number>(timedOutAfterSending(), new AlreadyExistsError('key "k" already exists'));
  let verified = 0;
  const revision = await retryEtcdCall(write, {
    what: 'txn',
    attempts: 3,
    verify: async () => {
      verified++;
      return 42;
    },
  });
  t.is(revision, 42);
  t.is(verified, 1);
  t.is(write.calls, 2);
});

test('etcd retry - a conditional write the state cannot vouch for is UNAVAILABLE, never a false conflict', async (t) => {
  const write = scripted<number>(etcdTimedOut(), new BadVersionError('key "k" is at version 9, expected 7'));
  const err = await t.throwsAsync(
    retryEtcdCall(write, { what: 'txn', attempts: 2, verify: async () => undefined }),
    { instanceOf: UnavailableError },
  );
  t.regex(err?.message ?? '', /^txn: outcome unknown.*request timed out.*version 9, expected 7.*Re-read/);
  t.true(err?.cause instanceof BadVersionError);
});

test('etcd retry - a conflict with no ambiguous attempt before it is reported as is', async (t) => {
  let verified = 0;
  const verify = async () => {
    verified++;
    return 1;
  };
  // First attempt: etcd answered, the condition is false.
  const conflict = scripted<number>(new AlreadyExistsError('key "k" already exists'));
  await t.throwsAsync(retryEtcdCall(conflict, { what: 'txn', attempts: 3, verify }), {
    instanceOf: AlreadyExistsError,
  });
  t.is(verified, 0);
  // A write that fails for a reason not transient is not retried.
  const invalid = scripted<number>(new GRPCInvalidArgumentError('3 INVALID_ARGUMENT: bad'), 1);
  await t.throwsAsync(retryEtcdCall(invalid, { what: 'txn', attempts: 3, verify }), {
    instanceOf: GRPCInvalidArgumentError,
  });
  t.is(invalid.calls, 1);
});

test('etcd retry - a conditional write retried after an ambiguous failure may simply succeed', async (t) => {
  const write = scripted<number>(dropped(), 17);
  t.is(await retryEtcdCall(write, { what: 'txn', attempts: 2, verify: async () => undefined }), 17);
});
