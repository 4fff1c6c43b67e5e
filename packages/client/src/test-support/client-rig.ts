import { SluiceClient } from '../index.js';
import { FakeBroker, FakeCluster } from './fake-broker.js';

/** A fake broker and a client of it, both closed when the test ends. */
export async function setupFakeClient(
  t: { teardown(fn: () => Promise<void> | void): void },
  opts: { cluster?: FakeCluster; operationTimeoutMs?: number } = {},
): Promise<{ cluster: FakeCluster; broker: FakeBroker; client: SluiceClient }> {
  const cluster = opts.cluster ?? new FakeCluster();
  const broker = await FakeBroker.start(cluster);
  const client = new SluiceClient({
    serviceUrl: broker.address,
    operationTimeoutMs: opts.operationTimeoutMs ?? 5000,
  });
  t.teardown(async () => {
    await client.close();
    await broker.stop();
  });
  return { cluster, broker, client };
}

/** Poll `cond` every 10 ms; throws after `ms`. */
export async function waitUntil(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
