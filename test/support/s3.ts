import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from 's3rver';
import { freePort } from './ports.js';

/** An S3-compatible server (s3rver) on a free loopback port with a temp dir. */
export class S3Server {
  private constructor(
    private readonly server: S3rver,
    readonly endpoint: string,
    readonly dir: string,
  ) {}

  static async start(buckets: string[] = ['sluice-test']): Promise<S3Server> {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-s3-'));
    const port = await freePort();
    const server = new S3rver({
      address: '127.0.0.1',
      port,
      silent: true,
      directory: dir,
      configureBuckets: buckets.map((name) => ({ name, configs: [] })),
    });
    await server.run();
    return new S3Server(server, `http://127.0.0.1:${port}`, dir);
  }

  async stop(): Promise<void> {
    await this.server.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
