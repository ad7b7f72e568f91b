import type { FastifyInstance } from 'fastify';
import { AuditPageSchema, ListAuditQuery, Problem, type ListAuditQueryWire } from '../../../contract/index.js';
import { listAudit } from '../../../audit/index.js';
import type { RouteDeps } from '../../route-deps.js';
import { errorResponses } from '../responses.js';

export function listAuditRoute(app: FastifyInstance, deps: RouteDeps): void {
  app.get<{ Querystring: ListAuditQueryWire }>(
    '/v1/audit',
    {
      onRequest: deps.guard('audit:read'),
      schema: {
        tags: ['audit'],
        summary: 'Page through audit events in sequence order',
        querystring: ListAuditQuery,
        response: { 200: AuditPageSchema, ...errorResponses(Problem) },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 100;
      const events = await listAudit(deps.store.db, { ...request.query, limit: limit + 1 });
      const page = events.slice(0, limit);
      return { data: page, nextCursor: events.length > limit ? page[page.length - 1]!.seq : null };
    },
  );
}
