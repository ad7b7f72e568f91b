/** Prometheus metrics on a registry of the server's own (no global state). */
import type { FastifyInstance } from 'fastify';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface ServerMetrics {
  readonly registry: Registry;
  readonly verifications: Counter<'outcome'>;
  readonly verifyDuration: Histogram;
  readonly httpRequests: Counter<'method' | 'route' | 'status'>;
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): ServerMetrics {
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'keysmith_' });
  return {
    registry,
    verifications: new Counter({
      name: 'keysmith_verifications_total',
      help: 'Key verifications by outcome code',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    verifyDuration: new Histogram({
      name: 'keysmith_verify_duration_seconds',
      help: 'Time spent verifying a key, from parsed body to outcome',
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25],
      registers: [registry],
    }),
    httpRequests: new Counter({
      name: 'keysmith_http_requests_total',
      help: 'HTTP requests by method, route pattern and status',
      labelNames: ['method', 'route', 'status'],
      registers: [registry],
    }),
  };
}

export function registerMetrics(app: FastifyInstance, metrics: ServerMetrics): void {
  // Label children are cached: resolving labels on every request costs more than the increment.
  const children = new Map<string, { inc(): void }>();
  app.addHook('onResponse', (request, reply, done) => {
    // Route patterns, never raw URLs: a URL could carry an id or worse.
    const route = request.routeOptions.url ?? 'unmatched';
    const slot = `${request.method} ${reply.statusCode} ${route}`;
    let child = children.get(slot);
    if (!child) {
      child = metrics.httpRequests.labels({ method: request.method, route, status: reply.statusCode });
      children.set(slot, child);
    }
    child.inc();
    done();
  });
  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });
}
