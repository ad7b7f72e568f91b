import type { FastifyInstance } from 'fastify';
import { ChainVerificationSchema, Problem } from '../../../contract/index.js';
import type { RouteDeps } from '../../route-deps.js';
import { errorResponses } from '../responses.js';

export function verifyAuditRoute(app: FastifyInstance, deps: RouteDeps): void {
  app.post(
    '/v1/audit/verify',
    {
      onRequest: deps.guard('audit:read'),
      schema: {
        tags: ['audit'],
        summary: 'Check the hash chain and name the first event that was edited, deleted or reordered',
        response: { 200: ChainVerificationSchema, ...errorResponses(Problem) },
      },
    },
    async () => deps.audit.verify(deps.store.db),
  );
}
