/** Liveness and readiness: /healthz says the process runs, /readyz that the store answers. */
import type { FastifyInstance } from 'fastify';
import { AppError } from '../../../shared/errors.js';
import type { RouteDeps } from '../../route-deps.js';

export function healthRoutes(app: FastifyInstance, deps: RouteDeps): void {
  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { hide: true } }, async () => {
    if (!deps.isReady()) throw new AppError('ERR_UNAVAILABLE', 'the server is shutting down');
    try {
      await deps.store.ping();
    } catch {
      throw new AppError('ERR_UNAVAILABLE', 'the database does not answer');
    }
    return { status: 'ready' };
  });
}
