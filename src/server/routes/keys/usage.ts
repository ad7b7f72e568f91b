import type { FastifyInstance } from 'fastify';
import { KeyIdParam, KeyUsageSchema, Problem, UsageQuery } from '../../../contract/index.js';
import type { RouteDeps } from '../../route-deps.js';
import { errorResponses } from '../responses.js';

export function keyUsageRoute(app: FastifyInstance, deps: RouteDeps): void {
  app.get<{ Params: { id: string }; Querystring: { since?: string } }>(
    '/v1/keys/:id/usage',
    {
      onRequest: deps.guard('keys:read'),
      schema: {
        tags: ['keys'],
        summary: 'Verifications per minute by outcome, and the last use',
        params: KeyIdParam,
        querystring: UsageQuery,
        response: { 200: KeyUsageSchema, ...errorResponses(Problem) },
      },
    },
    async (request) => deps.keys.usageOf(request.params.id, request.query.since ?? '24h'),
  );
}
