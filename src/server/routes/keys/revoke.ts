import type { FastifyInstance } from 'fastify';
import { KeyIdParam, KeyRecordSchema, Problem, RevokeKeyBody } from '../../../contract/index.js';
import { actorContext } from '../../plugins/auth.js';
import { optionalBody } from '../../plugins/optional-body.js';
import type { RouteDeps } from '../../route-deps.js';
import { errorResponses } from '../responses.js';

export function revokeKeyRoute(app: FastifyInstance, deps: RouteDeps): void {
  app.post<{ Params: { id: string }; Body: { reason?: string } | undefined }>(
    '/v1/keys/:id/revoke',
    {
      onRequest: deps.guard('keys:revoke'),
      preValidation: optionalBody,
      schema: {
        tags: ['keys'],
        summary: 'Revoke a key now; the next verify on this server answers REVOKED',
        params: KeyIdParam,
        body: RevokeKeyBody,
        response: { 200: KeyRecordSchema, ...errorResponses(Problem) },
      },
    },
    async (request) => deps.keys.revoke(actorContext(request), request.params.id, request.body?.reason),
  );
}
