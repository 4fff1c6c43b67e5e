import { NotOwnerError, UnavailableError } from '@sluice/common';
import test from 'ava';
import { setupFakeClient } from './test-support/client-rig.js';

async function setup(t: { teardown(fn: () => Promise<void> | void): void }) {
  return setupFakeClient(t, { operationTimeoutMs: 500 });
}

test('admin - a mutation past its deadline is not sent again (the broker may have applied it)', async (t) => {
  const { broker, client } = await setup(t);
  broker.adminFailures.push('stall');
  const err = await t.throwsAsync(client.admin.createTenant('acme'));
  t.is((err as { code?: string }).code, 'TIMEOUT');
  t.deepEqual(broker.adminCalls, ['CreateTenant']);
});

test('admin - a mutation is retried when the broker was unreachable or not the owner', async (t) => {
  const { broker, client } = await setup(t);
  broker.adminFailures.push(new UnavailableError('broker going away'), new NotOwnerError('ownership moving'));
  await t.notThrowsAsync(client.admin.createTenant('acme'));
  t.deepEqual(broker.adminCalls, ['CreateTenant', 'CreateTenant', 'CreateTenant']);
});

test('admin - a read past its deadline is retried', async (t) => {
  const { broker, client } = await setup(t);
  broker.adminFailures.push('stall');
  t.true((await client.admin.listTenants()).includes('public'));
  t.deepEqual(broker.adminCalls, ['ListTenants', 'ListTenants']);
});
