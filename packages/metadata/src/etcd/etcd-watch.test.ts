import { EventEmitter } from 'node:events';
import { silentLogger } from '@sluice/common';
import test from 'ava';
import type { IWatchRequest, IWatchResponse, WatchClient } from 'etcd3';
import type { WatchEvent } from '../metadata-store.js';
import { KeySpace } from './etcd-keys.js';
import { EtcdWatch } from './etcd-watch.js';

/** One watch gRPC stream: records what the watch sends, lets the test answer. */
class FakeStream extends EventEmitter {
  readonly sent: IWatchRequest[] = [];
  write(req: IWatchRequest): boolean {
    this.sent.push(req);
    return true;
  }
  cancel(): void {}
  end(): void {}
}

class FakeWatchClient {
  readonly streams: FakeStream[] = [];
  async watch(): Promise<FakeStream> {
    const s = new FakeStream();
    this.streams.push(s);
    return s;
  }
}

const keys = new KeySpace('/sluice/t');

function response(revision: number, fields: Partial<IWatchResponse> = {}): IWatchResponse {
  return {
    header: { cluster_id: '1', member_id: '1', revision: String(revision), raft_term: '1' },
    watch_id: '0',
    created: false,
    canceled: false,
    compact_revision: '0',
    cancel_reason: '',
    fragment: false,
    events: [],
    ...fields,
  };
}

function putEvent(key: string, revision: number): IWatchResponse['events'][number] {
  return {
    type: 'Put',
    kv: {
      key: keys.key(key),
      create_revision: String(revision),
      mod_revision: String(revision),
      version: '1',
      value: Buffer.from('v'),
      lease: '0',
    },
    prev_kv: undefined as never,
  };
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A started watch on `prefix` from `from`, with the stream it runs on. */
async function startWatch(from: number, seen: WatchEvent[] = []) {
  const client = new FakeWatchClient();
  const w = new EtcdWatch(
    client as unknown as WatchClient,
    keys,
    'ns/',
    from,
    (ev) => seen.push(ev),
    undefined,
    silentLogger,
    () => undefined,
  );
  const started = w.start(5000);
  await until(() => client.streams[0]?.sent.length === 1, 'create request');
  const first = client.streams[0] as FakeStream;
  // etcd's created response carries the store's current revision.
  first.emit('data', response(Math.max(from - 1, 1), { created: true }));
  await started;
  /** Break the current stream and return the create request of the next one. */
  const reconnect = async () => {
    const n = client.streams.length;
    (client.streams[n - 1] as FakeStream).emit('error', new Error('connection reset'));
    await until(() => client.streams[n]?.sent.length === 1, 'reconnect');
    const s = client.streams[n] as FakeStream;
    return { stream: s, create: s.sent[0]?.create_request };
  };
  return { w, first, reconnect };
}

test('etcd watch - asks etcd for progress notifications', async (t) => {
  const { w, first } = await startWatch(11);
  t.teardown(() => w.close());
  t.is(first.sent[0]?.create_request?.progress_notify, true);
  t.is(first.sent[0]?.create_request?.start_revision, 11);
});

test('etcd watch - a quiet watch resumes from the revision of the last progress notification', async (t) => {
  const { w, first, reconnect } = await startWatch(11);
  t.teardown(() => w.close());
  // Writes elsewhere moved the store to revision 500; nothing under the prefix changed.
  first.emit('data', response(500));
  const { stream, create } = await reconnect();
  t.is(create?.start_revision, 501, 'resumes near the present, not at the compactable start');
  t.is(create?.progress_notify, true);
  // A progress notification never moves the resume point back.
  stream.emit('data', response(600, { created: true }));
  stream.emit('data', response(450));
  t.is((await reconnect()).create?.start_revision, 501);
});

test('etcd watch - a watcher replaying history resumes after its last event, not at the header revision', async (t) => {
  const seen: WatchEvent[] = [];
  const { w, first, reconnect } = await startWatch(5, seen);
  t.teardown(() => w.close());
  // While catching up etcd stamps event responses with the store's current revision.
  first.emit('data', response(100, { events: [putEvent('ns/a', 5), putEvent('ns/b', 6)] }));
  t.deepEqual(
    seen.map((e) => `${e.key}@${e.version}`),
    ['ns/a@5', 'ns/b@6'],
  );
  const { stream, create } = await reconnect();
  t.is(create?.start_revision, 7);
  // The created response of the new stream carries the current revision too: still no jump.
  stream.emit('data', response(100, { created: true }));
  t.is((await reconnect()).create?.start_revision, 7);
});
