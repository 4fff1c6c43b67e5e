import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { connect, RetentionPolicy, StorageType } from 'nats';
import { ensureDebianPackages } from '../../support/apt.js';
import { freePort, waitFor } from '../../support/ports.js';
import { Proc, writeBytesOf } from './processes.js';

/** Debian installs the server under sbin. */
export const NATS_SERVER = '/usr/sbin/nats-server';

export interface NatsTopology {
  servers: string;
  /** One stream (and subject) per benchmark topic. */
  streams: { stream: string; subject: string }[];
  writeBytes(): number;
  stop(): Promise<void>;
}

/**
 * `replicas` nats-server processes with JetStream file storage (one server, or
 * a cluster routed on loopback ports), and one stream of that many replicas.
 * Durability is the server's default: Debian's 2.9 fsyncs every 2 minutes.
 */
export async function startNats(replicas: number, topics: number, dataDir: string): Promise<NatsTopology> {
  ensureDebianPackages(NATS_SERVER, ['nats-server']);
  const nodes = await Promise.all(
    Array.from({ length: replicas }, async (_, i) => ({
      port: await freePort(),
      clusterPort: await freePort(),
      httpPort: await freePort(),
      dir: join(dataDir, `nats-${i}`),
    })),
  );
  const routes = nodes.map((n) => `nats://127.0.0.1:${n.clusterPort}`).join(',');
  const procs = nodes.map((n, i) => {
    mkdirSync(n.dir, { recursive: true });
    const args = ['-a', '127.0.0.1', '-p', String(n.port), '-m', String(n.httpPort), '-js', '-sd', n.dir];
    args.push('-n', `bench-${i}`);
    if (replicas > 1) {
      args.push(
        '--cluster_name',
        'bench',
        '--cluster',
        `nats://127.0.0.1:${n.clusterPort}`,
        '--routes',
        routes,
      );
    }
    return new Proc(`nats-server-${i}`, NATS_SERVER, args);
  });
  const stop = async () => {
    await Promise.all(procs.map((p) => p.stop()));
  };
  try {
    await Promise.all(
      nodes.map((n, i) =>
        waitFor(
          async () => {
            if (!procs[i]!.running) throw new Error(`nats-server exited: ${procs[i]!.stderr.slice(-2000)}`);
            return (await fetch(`http://127.0.0.1:${n.httpPort}/healthz`)).ok;
          },
          30_000,
          `nats-server-${i}`,
        ),
      ),
    );
    const servers = nodes.map((n) => `127.0.0.1:${n.port}`).join(',');
    const streams = Array.from({ length: topics }, (_, i) => ({
      stream: `BENCH_T${i}`,
      subject: `bench.t${i}`,
    }));
    const nc = await connect({ servers: servers.split(',') });
    try {
      const jsm = await nc.jetstreamManager();
      // A new cluster elects its JetStream meta leader a few seconds after the servers report healthy.
      for (const { stream, subject } of streams) {
        await waitFor(
          async () => {
            await jsm.streams.add({
              name: stream,
              subjects: [subject],
              storage: StorageType.File,
              num_replicas: replicas,
              retention: RetentionPolicy.Limits,
            });
            return true;
          },
          60_000,
          `JetStream stream ${stream}`,
        );
      }
    } finally {
      await nc.close();
    }
    return {
      servers,
      streams,
      writeBytes: () => procs.reduce((n, p) => n + writeBytesOf(p.child.pid), 0),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
