/** disable, enable and retire: bodiless state changes on one key. */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { KeyIdParam, KeyRecordSchema, Problem } from '../../../contract/index.js';
import type { KeyRecord } from '../../../keys/index.js';
import type { ActorContext } from '../../../audit/index.js';
import { actorContext } from '../../plugins/auth.js';
import { optionalBody } from '../../plugins/optional-body.js';
import type { RouteDeps } from '../../route-deps.js';
import { errorResponses } from '../responses.js';

const EmptyBody = Type.Object({}, { additionalProperties: false });

export function keyStateRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const operations: Array<[string, string, string, (ctx: ActorContext, id: string) => Promise<KeyRecord>]> = [
    ['disable', 'keys:revoke', 'Disable a key; verify answers DISABLED until it is enabled', (ctx, id) => deps.keys.disable(ctx, id)],
    ['enable', 'keys:revoke', 'Enable a disabled key', (ctx, id) => deps.keys.enable(ctx, id)],
    ['retire', 'keys:revoke', 'Destroy the hash of a revoked or expired key, keeping its record for audit', (ctx, id) => deps.keys.retire(ctx, id)],
  ];
  for (const [name, scope, summary, run] of operations) {
    app.post<{ Params: { id: string } }>(
      `/v1/keys/:id/${name}`,
      {
        onRequest: deps.guard(scope),
        preValidation: optionalBody,
        schema: {
          tags: ['keys'],
          summary,
          params: KeyIdParam,
          body: EmptyBody,
          response: { 200: KeyRecordSchema, ...errorResponses(Problem) },
        },
      },
      async (request) => run(actorContext(request), request.params.id),
    );
  }
}
