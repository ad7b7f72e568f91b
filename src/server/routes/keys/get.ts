import type { FastifyInstance } from 'fastify';
import { KeyIdParam, KeyRecordSchema, Problem } from '../../../contract/index.js';
import type { RouteDeps } from '../../route-deps.js';
import { errorResponses } from '../responses.js';

export function getKeyRoute(app: FastifyInstance, deps: RouteDeps): void {
  app.get<{ Params: { id: string } }>(
    '/v1/keys/:id',
    {
      onRequest: deps.guard('keys:read'),
      schema: {
        tags: ['keys'],
        summary: 'Read one key record (never its secret or hash)',
        params: KeyIdParam,
        response: { 200: KeyRecordSchema, ...errorResponses(Problem) },
      },
    },
    async (request) => deps.keys.get(request.params.id),
  );
}
