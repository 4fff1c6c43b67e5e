import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BadVersionError, UnavailableError } from '@sluice/common';
import { EmbeddedMetadataStore, type MetadataStore } from '@sluice/metadata';
import test from 'ava';
import { casPut, isOutcomeUnknown } from './ledger-list.js';

async function store(t: { teardown: (fn: () => Promise<void>) => void }) {
  const dir = await mkdtemp(join(tmpdir(), 'ledger-list-'));
  const m = await EmbeddedMetadataStore.open({ dataDir: dir });
  t.teardown(async () => {
    await m.close();
    await rm(dir, { recursive: true, force: true });
  });
  return m;
}

test('ledger list - a CAS that commits but answers with an error counts as written', async (t) => {
  const m = await store(t);
  const v0 = await m.put('k', Buffer.from('a'), { createOnly: true });
  const lostAnswer = {
    put: async (...args: Parameters<MetadataStore['put']>) => {
      await m.put(...args);
      throw new UnavailableError('deadline exceeded after commit (injected)');
    },
    get: (key: string) => m.get(key),
  } as unknown as MetadataStore;
  const v1 = await casPut(lostAnswer, 'k', Buffer.from('b'), v0);
  t.is(v1, (await m.get('k'))?.version as number);
  // Someone else's write is still a BadVersion.
  await m.put('k', Buffer.from('c'), { expectedVersion: v1 });
  await t.throwsAsync(casPut(m, 'k', Buffer.from('d'), v1), { instanceOf: BadVersionError });
});

test('ledger list - a failed CAS whose read-back fails too is marked outcome-unknown', async (t) => {
  const m = await store(t);
  const v0 = await m.put('k', Buffer.from('a'), { createOnly: true });
  const down = {
    put: async () => {
      throw new UnavailableError('metadata store unreachable (injected)');
    },
    get: async () => {
      throw new UnavailableError('metadata store unreachable (injected)');
    },
  } as unknown as MetadataStore;
  const err = await t.throwsAsync(casPut(down, 'k', Buffer.from('b'), v0));
  t.true(isOutcomeUnknown(err));
  const notWritten = { ...down, get: (key: string) => m.get(key) } as unknown as MetadataStore;
  const err2 = await t.throwsAsync(casPut(notWritten, 'k', Buffer.from('b'), v0));
  t.false(isOutcomeUnknown(err2));
});
