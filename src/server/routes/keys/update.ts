import type { FastifyInstance } from 'fastify';
import { KeyIdParam, KeyRecordSchema, Problem, UpdateKeyBody, type UpdateKeyBodyWire } from '../../../contract/index.js';
import { actorContext } from '../../plugins/auth.js';
import { optionalBody } from '../../plugins/optional-body.js';
import type { RouteDeps } from '../../route-deps.js';
import { errorResponses } from '../responses.js';

export function updateKeyRoute(app: FastifyInstance, deps: RouteDeps): void {
  app.patch<{ Params: { id: string }; Body: UpdateKeyBodyWire }>(
    '/v1/keys/:id',
    {
      onRequest: deps.guard('keys:update'),
      preValidation: optionalBody,
      schema: {
        tags: ['keys'],
        summary: 'Change labels, narrow scopes, set the allowlist, rate limit or expiry',
        params: KeyIdParam,
        body: UpdateKeyBody,
        response: { 200: KeyRecordSchema, ...errorResponses(Problem) },
      },
    },
    async (request) => deps.keys.update(actorContext(request), request.params.id, request.body),
  );
}
