import type { FastifyInstance } from 'fastify';
import { KeyPageSchema, ListKeysQuery, Problem, type ListKeysQueryWire } from '../../../contract/index.js';
import type { RouteDeps } from '../../route-deps.js';
import { errorResponses } from '../responses.js';

export function listKeysRoute(app: FastifyInstance, deps: RouteDeps): void {
  app.get<{ Querystring: ListKeysQueryWire }>(
    '/v1/keys',
    {
      onRequest: deps.guard('keys:read'),
      schema: {
        tags: ['keys'],
        summary: 'List service keys, newest first, with filters and cursor pagination',
        querystring: ListKeysQuery,
        response: { 200: KeyPageSchema, ...errorResponses(Problem) },
      },
    },
    async (request) => {
      const { label, ...rest } = request.query;
      const labels = (label ?? []).map((pair) => {
        const at = pair.indexOf('=');
        return [pair.slice(0, at), pair.slice(at + 1)] as const;
      });
      return deps.keys.list({ ...rest, labels });
    },
  );
}
