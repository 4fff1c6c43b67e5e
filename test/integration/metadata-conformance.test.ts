import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedMetadataStore, EtcdMetadataStore, type MetadataStore } from '@sluice/metadata';
import test from 'ava';
import { metadataConformance } from '../support/metadata-conformance.js';

const etcd = process.env.SLUICE_TEST_ETCD;
if (!etcd) throw new Error('SLUICE_TEST_ETCD is not set; run through scripts/with-services.ts or npm test');

let n = 0;
const runId = `${process.pid}-${Date.now()}`;
metadataConformance({
  name: 'etcd',
  open: async () =>
    new EtcdMetadataStore({ endpoints: [etcd], prefix: `/sluice-test/conformance-${runId}-${n++}` }),
  childUrl: (s) => `etcd://${etcd}${(s as EtcdMetadataStore).namespace}`,
  reopen: async (s) => {
    const ns = (s as EtcdMetadataStore).namespace;
    await s.close();
    return new EtcdMetadataStore({ endpoints: [etcd], prefix: ns });
  },
});

const dirs = new Map<MetadataStore, string>();
test.after.always(() => {
  for (const d of dirs.values()) rmSync(d, { recursive: true, force: true });
});
metadataConformance({
  name: 'embedded',
  open: async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-meta-'));
    const s = await EmbeddedMetadataStore.open({ dataDir: dir });
    dirs.set(s, dir);
    return s;
  },
  childUrl: () => undefined,
  killSession: (s, session) => (s as EmbeddedMetadataStore).expireSession(session.id),
  exclusiveUrl: (s) => `embedded://${dirs.get(s)}`,
  reopen: async (s) => {
    const dir = dirs.get(s) as string;
    await s.close();
    const s2 = await EmbeddedMetadataStore.open({ dataDir: dir });
    dirs.set(s2, dir);
    return s2;
  },
});
