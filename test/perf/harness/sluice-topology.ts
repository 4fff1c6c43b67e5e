import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { bookieNodeOptions } from '../../../packages/bookie/src/node-options.js';
import type { Workload } from '../../../packages/cli/src/perf/index.js';
import { EtcdServer } from '../../support/etcd.js';
import { freePort, waitFor } from '../../support/ports.js';
import { Proc, writeBytesOf } from './processes.js';

export const REPO = join(import.meta.dirname, '..', '..', '..');
export const SLUICE_BIN = join(REPO, 'packages', 'cli', 'dist', 'bin.js');

/** A running Sluice topology: real processes on loopback ports, data under one dir. */
export interface SluiceTopology {
  /** Service URL for clients (any broker). */
  serviceUrl: string;
  /** Storage bytes written so far by the server processes (/proc/PID/io). */
  writeBytes(): number;
  stop(): Promise<void>;
}

async function ready(name: string, proc: Proc, httpPort: number): Promise<void> {
  await waitFor(
    async () => {
      if (!proc.running) throw new Error(`${name} exited: ${proc.stderr.slice(-2000)}`);
      const res = await fetch(`http://127.0.0.1:${httpPort}/readyz`);
      return res.ok;
    },
    60_000,
    name,
  );
}

const serverEnv = { SLUICE_LOG_LEVEL: process.env.SLUICE_LOG_LEVEL ?? 'warn' };

export async function startSluice(w: Workload, dataDir: string): Promise<SluiceTopology> {
  const procs: Proc[] = [];
  let etcd: EtcdServer | undefined;
  const stop = async () => {
    await Promise.all(procs.reverse().map((p) => p.stop()));
    await etcd?.destroy();
  };
  try {
    if (w.topology === 'standalone') {
      const [port, httpPort] = [await freePort(), await freePort()];
      const p = new Proc(
        'sluice standalone',
        process.execPath,
        [
          SLUICE_BIN,
          'standalone',
          `--data-dir=${join(dataDir, 'standalone')}`,
          `--port=${port}`,
          `--http-port=${httpPort}`,
          '--bind-host=127.0.0.1',
        ],
        serverEnv,
      );
      procs.push(p);
      await ready('sluice standalone', p, httpPort);
      return {
        serviceUrl: `127.0.0.1:${port}`,
        writeBytes: () => writeBytesOf(p.child.pid),
        stop,
      };
    }
    etcd = await EtcdServer.start({ dataDir: join(dataDir, 'etcd') });
    const metadata = `etcd://${etcd.endpoint}/sluice/bench`;
    const bookies = await Promise.all(
      Array.from({ length: w.bookies }, async (_, i) => {
        const [port, httpPort, addPort] = [await freePort(), await freePort(), await freePort()];
        const dir = join(dataDir, `bookie-${i}`);
        mkdirSync(dir, { recursive: true });
        const p = new Proc(
          `bookie-${i}`,
          process.execPath,
          [
            SLUICE_BIN,
            'bookie',
            `--metadata=${metadata}`,
            `--data-dir=${dir}`,
            `--port=${port}`,
            `--http-port=${httpPort}`,
            // BENCH_ADD_TRANSPORT=grpc: no add channel, brokers add over gRPC (for A/B runs).
            `--add-port=${process.env.BENCH_ADD_TRANSPORT === 'grpc' ? -1 : addPort}`,
            '--bind-host=127.0.0.1',
            `--advertise-address=127.0.0.1:${port}`,
          ],
          // As the Helm chart starts bookies.
          { ...serverEnv, NODE_OPTIONS: bookieNodeOptions(process.env.NODE_OPTIONS) },
        );
        procs.push(p);
        return { p, httpPort };
      }),
    );
    await Promise.all(bookies.map((b, i) => ready(`bookie-${i}`, b.p, b.httpPort)));
    const persistenceEnv = {
      SLUICE_BROKER_ENSEMBLE_SIZE: String(w.persistence.ensembleSize),
      SLUICE_BROKER_WRITE_QUORUM: String(w.persistence.writeQuorum),
      SLUICE_BROKER_ACK_QUORUM: String(w.persistence.ackQuorum),
    };
    const brokers = await Promise.all(
      Array.from({ length: w.brokers }, async (_, i) => {
        const [port, httpPort] = [await freePort(), await freePort()];
        const p = new Proc(
          `broker-${i}`,
          process.execPath,
          [
            SLUICE_BIN,
            'broker',
            `--metadata=${metadata}`,
            `--port=${port}`,
            `--http-port=${httpPort}`,
            '--bind-host=127.0.0.1',
            `--advertise-address=127.0.0.1:${port}`,
          ],
          { ...serverEnv, ...persistenceEnv },
        );
        procs.push(p);
        return { p, port, httpPort };
      }),
    );
    await Promise.all(brokers.map((b, i) => ready(`broker-${i}`, b.p, b.httpPort)));
    return {
      serviceUrl: `127.0.0.1:${brokers[0]!.port}`,
      writeBytes: () => procs.reduce((n, p) => n + writeBytesOf(p.child.pid), 0),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
