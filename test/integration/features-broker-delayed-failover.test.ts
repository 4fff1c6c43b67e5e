import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { type BookieProcess, testMetadataUrl } from '../support/bookie-process.js';
import { type SluiceProcess, startBookies, startBroker } from '../support/cluster.js';
import { sleep, valuesOf, Wire, type WireConsumer } from './features-broker-wire.js';

test('delayed delivery - the delayed index survives a SIGKILL of the owning broker (rebuilt from the log)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-delayed-failover-'));
  const metadata = testMetadataUrl('features-broker-delayed-failover');
  const bookies: BookieProcess[] = [];
  const brokers: SluiceProcess[] = [];
  const wires: Wire[] = [];
  t.teardown(async () => {
    for (const w of wires) w.close();
    for (const p of [...brokers, ...bookies]) p.kill('SIGKILL');
    await Promise.all([...brokers, ...bookies].map((p) => p.exited));
    await rm(dir, { recursive: true, force: true });
  });
  bookies.push(...(await startBookies(metadata, dir, 2)));
  brokers.push(await startBroker(metadata), await startBroker(metadata));

  const topic = 'persistent://public/default/delayed-failover';
  const probe = new Wire(brokers[0]!.address);
  wires.push(probe);
  const { brokerAddress } = await probe.lookupCall<{ brokerAddress: string }>('Lookup', { topic });
  const owner = brokers.find((b) => b.address === brokerAddress)!;
  const survivor = brokers.find((b) => b !== owner)!;
  t.truthy(owner);

  const ownerWire = new Wire(owner.address);
  wires.push(ownerWire);
  const c = await ownerWire.subscribe(topic, 'work', {
    type: 'SUBSCRIPTION_TYPE_SHARED',
    initialPosition: 'earliest',
  });
  c.flow(100);
  const p = await ownerWire.produce(topic);
  const deliverAt = Date.now() + 6000;
  for (let i = 0; i < 10; i++) await p.publish([`d${i}`], { deliverAt });
  await p.publish(['now']);
  const [immediate] = await c.receive(1);
  t.deepEqual(immediate!.values, ['now']);
  c.ack(immediate!.id);
  await sleep(300);
  owner.kill('SIGKILL');

  const wire = new Wire(survivor.address);
  wires.push(wire);
  let c2: WireConsumer | undefined;
  const deadline = Date.now() + 20_000;
  while (!c2 && Date.now() < deadline) {
    try {
      c2 = await wire.subscribe(topic, 'work', { type: 'SUBSCRIPTION_TYPE_SHARED' });
    } catch {
      await sleep(300);
    }
  }
  t.truthy(c2, 'the survivor took the topic over');
  c2!.flow(100);
  const early = await c2!.receive(1, Math.max(0, deliverAt - Date.now() - 300));
  t.deepEqual(valuesOf(early), [], 'nothing delivered before deliver_at on the new owner');
  const got = await c2!.receive(10, 10_000);
  t.deepEqual(valuesOf(got).sort(), ['d0', 'd1', 'd2', 'd3', 'd4', 'd5', 'd6', 'd7', 'd8', 'd9']);
  t.true(Date.now() >= deliverAt - 50);
  for (const d of got) c2!.ack(d.id);
});
