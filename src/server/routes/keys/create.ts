import type { FastifyInstance } from 'fastify';
import { CreateKeyBody, IssuedKeySchema, Problem, type CreateKeyBodyWire } from '../../../contract/index.js';
import { actorContext } from '../../plugins/auth.js';
import { optionalBody } from '../../plugins/optional-body.js';
import type { RouteDeps } from '../../route-deps.js';
import { errorResponses } from '../responses.js';

export function createKeyRoute(app: FastifyInstance, deps: RouteDeps): void {
  app.post<{ Body: CreateKeyBodyWire }>(
    '/v1/keys',
    {
      onRequest: deps.guard('keys:create'),
      preValidation: optionalBody,
      schema: {
        tags: ['keys'],
        summary: 'Issue a service key; the key is in the response once and never again',
        body: CreateKeyBody,
        response: { 201: IssuedKeySchema, ...errorResponses(Problem) },
      },
    },
    async (request, reply) => {
      const issued = await deps.keys.issue(actorContext(request), request.body);
      reply.code(201).header('cache-control', 'no-store');
      return { key: issued.key, ...issued.record };
    },
  );
}
