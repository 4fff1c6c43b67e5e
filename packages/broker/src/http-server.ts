import { createServer, type Server } from 'node:http';
import type { Logger, Registry } from '@sluice/common';

export interface HttpProbes {
  /** Null when ready; otherwise why not. */
  notReadyReason(): Promise<string | null>;
}

/** `/metrics` (Prometheus), `/healthz` (process up), `/readyz` (can serve traffic). */
export function startHttpServer(
  host: string,
  port: number,
  registry: Registry,
  probes: HttpProbes,
  logger: Logger,
): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const reply = (code: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(code, { 'content-type': type });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'method not allowed\n');
    if (path === '/healthz') return reply(200, 'ok\n');
    if (path === '/readyz') {
      probes.notReadyReason().then(
        (reason) => (reason ? reply(503, `not ready: ${reason}\n`) : reply(200, 'ready\n')),
        (err: Error) => reply(503, `not ready: ${err.message}\n`),
      );
      return;
    }
    if (path === '/metrics') {
      registry.metrics().then(
        (text) => reply(200, text, registry.contentType),
        (err: Error) => reply(500, `metrics failed: ${err.message}\n`),
      );
      return;
    }
    reply(404, 'not found; try /metrics, /healthz or /readyz\n');
  });
  server.on('clientError', (err, socket) => {
    logger.debug({ err }, 'bad HTTP request');
    socket.destroy();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
