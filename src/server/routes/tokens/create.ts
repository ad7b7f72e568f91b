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
        description:
          'The new token never outlives the calling token: an expiry (given or default) past the caller’s own is clamped to it, as Vault clamps a child token’s TTL (the answer’s expiresAt says which). ' +
          'The caller’s IP allowlist is an upper bound: with no ipAllowlist the new token inherits it, and an entry outside it is refused with 403 ERR_ALLOWLIST_ESCALATION.',
        body: CreateTokenBody,
        response: { 201: IssuedKeySchema, ...errorResponses(Problem) },
      },
    },
    async (request, reply) => {
      const issued = await deps.keys.issueToken(actorContext(request), request.principal?.scopes ?? [], request.body, request.principal?.id);
      reply.code(201).header('cache-control', 'no-store');
      return { key: issued.key, ...issued.record };
    },
  );
}
