import { createServer, type Server } from 'node:http';
import type { Registry } from '@sluice/common';

export interface HttpEndpointsOptions {
  registry: Registry;
  /** Liveness: the process runs and its storage has not failed. */
  healthy: () => { ok: boolean; detail: string };
  /** Readiness: started, registered and serving (read-only still serves reads). */
  ready: () => { ok: boolean; detail: string };
}

/** /metrics (Prometheus), /healthz and /readyz on one small HTTP server. */
export function createHttpEndpoints(opts: HttpEndpointsOptions): Server {
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const reply = (code: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(code, { 'content-type': type });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      reply(405, 'only GET is supported\n');
      return;
    }
    if (path === '/metrics') {
      opts.registry.metrics().then(
        (text) => reply(200, text, opts.registry.contentType),
        (err: Error) => reply(500, `metrics unavailable: ${err.message}\n`),
      );
      return;
    }
    if (path === '/healthz' || path === '/readyz') {
      const s = path === '/healthz' ? opts.healthy() : opts.ready();
      reply(s.ok ? 200 : 503, `${s.detail}\n`);
      return;
    }
    reply(404, 'not found; try /metrics, /healthz or /readyz\n');
  });
}
