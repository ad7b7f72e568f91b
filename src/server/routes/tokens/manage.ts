/**
 * Management tokens: list, read, rotate, revoke. A caller may rotate or revoke only a token
 * whose scopes its own cover, so no token can be used to mint or kill a stronger one.
 */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import {
  KeyIdParam,
  KeyPageSchema,
  KeyRecordSchema,
  Problem,
  RevokeKeyBody,
  RotateKeyBody,
  RotatedKeySchema,
  type RotateKeyBodyWire,
} from '../../../contract/index.js';
import { actorContext } from '../../plugins/auth.js';
import { optionalBody } from '../../plugins/optional-body.js';
import type { RouteDeps } from '../../route-deps.js';
import { errorResponses } from '../responses.js';

const ListTokensQuery = Type.Object(
  {
    cursor: Type.Optional(Type.String({ maxLength: 200 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
  },
  { additionalProperties: false },
);

export function manageTokenRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const target = (principal: { readonly id: string; readonly scopes: readonly string[] } | undefined) => ({
    kind: 'management' as const,
    callerScopes: principal?.scopes ?? [],
    callerId: principal?.id,
  });

  app.get<{ Querystring: { cursor?: string; limit?: number } }>(
    '/v1/tokens',
    {
      onRequest: deps.guard('tokens:read'),
      schema: {
        tags: ['tokens'],
        summary: 'List management tokens, newest first',
        querystring: ListTokensQuery,
        response: { 200: KeyPageSchema, ...errorResponses(Problem) },
      },
    },
    async (request) => deps.keys.list({ ...request.query, kind: 'management' }),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/tokens/:id',
    {
      onRequest: deps.guard('tokens:read'),
      schema: { tags: ['tokens'], summary: 'Read one management token record', params: KeyIdParam, response: { 200: KeyRecordSchema, ...errorResponses(Problem) } },
    },
    async (request) => deps.keys.get(request.params.id, 'management'),
  );

  app.post<{ Params: { id: string }; Body: RotateKeyBodyWire }>(
    '/v1/tokens/:id/rotate',
    {
      onRequest: deps.guard('tokens:rotate'),
      preValidation: optionalBody,
      schema: {
        tags: ['tokens'],
        summary: 'Rotate a management token the caller’s scopes cover',
        description: 'The new token ends no later than the calling token (its expiry is clamped, even when a token rotates itself) and stays inside the calling token’s IP allowlist.',
        params: KeyIdParam,
        body: RotateKeyBody,
        response: { 201: RotatedKeySchema, ...errorResponses(Problem) },
      },
    },
    async (request, reply) => {
      const rotated = await deps.keys.rotate(actorContext(request), request.params.id, request.body, target(request.principal));
      reply.code(201).header('cache-control', 'no-store');
      return { key: rotated.key, ...rotated.record, previous: rotated.previous };
    },
  );

  app.post<{ Params: { id: string }; Body: { reason?: string } }>(
    '/v1/tokens/:id/revoke',
    {
      onRequest: deps.guard('tokens:revoke'),
      preValidation: optionalBody,
      schema: {
        tags: ['tokens'],
        summary: 'Revoke a management token the caller’s scopes cover',
        params: KeyIdParam,
        body: RevokeKeyBody,
        response: { 200: KeyRecordSchema, ...errorResponses(Problem) },
      },
    },
    async (request) => deps.keys.revoke(actorContext(request), request.params.id, request.body.reason, target(request.principal)),
  );
}
