import type { FastifyInstance } from 'fastify';
import { KeyIdParam, Problem, RotateKeyBody, RotatedKeySchema, type RotateKeyBodyWire } from '../../../contract/index.js';
import { actorContext } from '../../plugins/auth.js';
import { optionalBody } from '../../plugins/optional-body.js';
import type { RouteDeps } from '../../route-deps.js';
import { errorResponses } from '../responses.js';

export function rotateKeyRoute(app: FastifyInstance, deps: RouteDeps): void {
  app.post<{ Params: { id: string }; Body: RotateKeyBodyWire | undefined }>(
    '/v1/keys/:id/rotate',
    {
      onRequest: deps.guard('keys:rotate'),
      preValidation: optionalBody,
      schema: {
        tags: ['keys'],
        summary: 'Rotate a key: issue a successor; the old key stays valid for the overlap',
        params: KeyIdParam,
        body: RotateKeyBody,
        response: { 201: RotatedKeySchema, ...errorResponses(Problem) },
      },
    },
    async (request, reply) => {
      const rotated = await deps.keys.rotate(actorContext(request), request.params.id, request.body ?? {});
      reply.code(201).header('cache-control', 'no-store');
      return { key: rotated.key, ...rotated.record, previous: rotated.previous };
    },
  );
}
