/** Key-encryption key versions: status with re-wrap progress, rotate, retire. */
import type { FastifyInstance } from 'fastify';
import { KekStatusSchema, KekVersionParam, Problem } from '../../../contract/index.js';
import { actorContext } from '../../plugins/auth.js';
import type { RouteDeps } from '../../route-deps.js';
import { errorResponses } from '../responses.js';

export function kekRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const response = { 200: KekStatusSchema, ...errorResponses(Problem) };
  app.get(
    '/v1/kek',
    { onRequest: deps.guard('kek:read'), schema: { tags: ['kek'], summary: 'KEK versions, data keys per version, and re-wrap progress', response } },
    async () => deps.kek.status(),
  );

  app.post(
    '/v1/kek/rotate',
    {
      onRequest: deps.guard('kek:admin'),
      schema: { tags: ['kek'], summary: 'Add a KEK version that new writes use at once; data keys move to it in the background', response: { 201: KekStatusSchema, ...errorResponses(Problem) } },
    },
    async (request, reply) => reply.code(201).send(await deps.kek.rotate(actorContext(request))),
  );

  app.post<{ Params: { version: number } }>(
    '/v1/kek/versions/:version/retire',
    {
      onRequest: deps.guard('kek:admin'),
      schema: { tags: ['kek'], summary: 'Retire a KEK version no data key uses any more', params: KekVersionParam, response },
    },
    async (request) => deps.kek.retire(actorContext(request), request.params.version),
  );
}
