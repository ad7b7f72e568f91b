import type { FastifyInstance } from 'fastify';
import { CreateTokenBody, IssuedKeySchema, Problem, type CreateTokenBodyWire } from '../../../contract/index.js';
import { actorContext } from '../../plugins/auth.js';
import { optionalBody } from '../../plugins/optional-body.js';
import type { RouteDeps } from '../../route-deps.js';
import { errorResponses } from '../responses.js';

export function createTokenRoute(app: FastifyInstance, deps: RouteDeps): void {
  app.post<{ Body: CreateTokenBodyWire }>(
    '/v1/tokens',
    {
      onRequest: deps.guard('tokens:create'),
      preValidation: optionalBody,
      schema: {
        tags: ['tokens'],
        summary: 'Issue a management token with some of the caller’s scopes (keys:verify for a gateway)',
        body: CreateTokenBody,
        response: { 201: IssuedKeySchema, ...errorResponses(Problem) },
      },
    },
    async (request, reply) => {
      const issued = await deps.keys.issueToken(actorContext(request), request.principal?.scopes ?? [], request.body);
      reply.code(201).header('cache-control', 'no-store');
      return { key: issued.key, ...issued.record };
    },
  );
}
