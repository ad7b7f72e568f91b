/**
 * The secret vault's routes. The required scope depends on the path (`secrets:read:payments/*`
 * reads only under `payments/`), so it is worked out per request once the caller is known; a
 * malformed path is a 400 before any scope decision.
 */
import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import {
  CasBody,
  DeleteSecretQuery,
  DestroyVersionsBody,
  ListSecretsQuery,
  MoveStageBody,
  Problem,
  PutSecretBody,
  PutSecretResultSchema,
  ReadSecretQuery,
  ReadersQuery,
  SecretMetadataSchema,
  SecretPageSchema,
  SecretReadersSchema,
  SecretValueSchema,
  SecretVersionsSchema,
  type CasBodyWire,
  type DestroyVersionsBodyWire,
  type ListSecretsQueryWire,
  type MoveStageBodyWire,
  type PutSecretBodyWire,
  type ReadSecretQueryWire,
  type ReadersQueryWire,
} from '../../../contract/index.js';
import { pathGrant, secretScope, type SecretScope } from '../../../policy/index.js';
import { assertSecretPath } from '../../../secrets/index.js';
import { parseDuration } from '../../../shared/duration.js';
import { AppError } from '../../../shared/errors.js';
import { redactKeys } from '../../../shared/redact.js';
import { actorContext, type ScopeRequirement } from '../../plugins/auth.js';
import { optionalBody } from '../../plugins/optional-body.js';
import type { RouteDeps } from '../../route-deps.js';
import { errorResponses } from '../responses.js';
import { SECRET_ACTIONS_PREFIX } from './action-url.js';

const PathParam = Type.Object({ '*': Type.String({ maxLength: 600 }) });
type PathParams = { Params: { '*': string } };

function pathOf(request: FastifyRequest): string {
  return assertSecretPath((request.params as { '*': string })['*']);
}

function scopeFor(scope: SecretScope): ScopeRequirement {
  return { family: scope, qualified: (request) => secretScope(scope, pathOf(request)) };
}

function schema(summary: string, parts: Record<string, unknown>) {
  return { tags: ['secrets'], summary, params: PathParam, ...parts };
}

export function secretRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { secrets } = deps;
  const readOnPath = deps.guard(scopeFor('secrets:read'));
  const writeOnPath = deps.guard(scopeFor('secrets:write'));
  const adminOnPath = deps.guard(scopeFor('secrets:admin'));

  app.put<PathParams & { Body: PutSecretBodyWire }>(
    '/v1/secrets/*',
    {
      onRequest: writeOnPath,
      schema: schema('Add a version: current by default (the old current becomes previous), or pending', {
        body: PutSecretBody,
        response: { 200: PutSecretResultSchema, 201: PutSecretResultSchema, ...errorResponses(Problem) },
      }),
    },
    async (request, reply) => {
      const result = await secrets.put(actorContext(request), pathOf(request), request.body);
      return reply.code(result.replayed ? 200 : 201).send(result);
    },
  );

  app.get<PathParams & { Querystring: ReadSecretQueryWire }>(
    '/v1/secrets/*',
    {
      onRequest: readOnPath,
      schema: schema('Read a value by stage (default current) or version; every read is counted', {
        querystring: ReadSecretQuery,
        response: { 200: SecretValueSchema, ...errorResponses(Problem) },
      }),
    },
    // The answer comes serialised from the vault (cached per version), so it is sent as is.
    (request, reply) => {
      reply.header('content-type', 'application/json; charset=utf-8');
      const json = secrets.readJson(actorContext(request), pathOf(request), request.query);
      return typeof json === 'string' ? reply.send(json) : json.then((text) => reply.send(text));
    },
  );

  app.delete<PathParams & { Querystring: { recoveryWindow?: string } }>(
    '/v1/secrets/*',
    {
      onRequest: adminOnPath,
      schema: schema('Schedule the secret for deletion after a recovery window (7d by default, 1d to 30d)', {
        querystring: DeleteSecretQuery,
        response: { 200: SecretMetadataSchema, ...errorResponses(Problem) },
      }),
    },
    async (request) => secrets.delete(actorContext(request), pathOf(request), request.query.recoveryWindow),
  );

  app.get<{ Querystring: ListSecretsQueryWire }>(
    '/v1/secrets',
    {
      onRequest: deps.guard({ anyOf: 'secrets:read' }),
      schema: {
        tags: ['secrets'],
        summary: 'List secrets (metadata only) under a prefix; only paths the token may read',
        querystring: ListSecretsQuery,
        response: { 200: SecretPageSchema, ...errorResponses(Problem) },
      },
    },
    async (request) => {
      const granted = request.principal?.scopes ?? [];
      return secrets.list({ ...request.query, visible: pathGrant(granted, 'secrets:read') });
    },
  );

  const action = (name: string) => `${SECRET_ACTIONS_PREFIX}${name}/*`;

  app.get<PathParams>(
    action('versions'),
    {
      onRequest: readOnPath,
      schema: schema('GET /v1/secrets/{path}/versions: metadata and every version, without values', {
        response: { 200: SecretVersionsSchema, ...errorResponses(Problem) },
      }),
    },
    async (request) => secrets.versions(pathOf(request)),
  );

  app.get<PathParams & { Querystring: ReadersQueryWire }>(
    action('readers'),
    {
      onRequest: readOnPath,
      schema: schema('GET /v1/secrets/{path}/readers: who read a version (stage or number) since a time', {
        querystring: ReadersQuery,
        response: { 200: SecretReadersSchema, ...errorResponses(Problem) },
      }),
    },
    async (request) => {
      const { stage, version, since } = request.query;
      const sinceMs = deps.clock.now() - parseDuration(since ?? '24h', 'since');
      return secrets.readers(pathOf(request), { stage, version }, sinceMs);
    },
  );

  for (const [name, summary, run] of [
    ['promote', 'POST /v1/secrets/{path}/promote: pending becomes current, current becomes previous', secrets.promote.bind(secrets)],
    ['rollback', 'POST /v1/secrets/{path}/rollback: previous becomes current, current becomes previous', secrets.rollback.bind(secrets)],
  ] as const) {
    app.post<PathParams & { Body: CasBodyWire | undefined }>(
      action(name),
      {
        onRequest: writeOnPath,
        preValidation: optionalBody,
        schema: schema(summary, { body: CasBody, response: { 200: SecretMetadataSchema, ...errorResponses(Problem) } }),
      },
      async (request) => run(actorContext(request), pathOf(request), request.body?.cas),
    );
  }

  app.post<PathParams & { Body: MoveStageBodyWire }>(
    action('stages'),
    {
      onRequest: writeOnPath,
      schema: schema('POST /v1/secrets/{path}/stages: put a custom stage on a version, or take it off', {
        body: MoveStageBody,
        response: { 200: SecretMetadataSchema, ...errorResponses(Problem) },
      }),
    },
    async (request) => secrets.moveStage(actorContext(request), pathOf(request), request.body.stage, request.body.version, request.body.cas),
  );

  app.post<PathParams>(
    action('restore'),
    {
      onRequest: adminOnPath,
      preValidation: optionalBody,
      schema: schema('POST /v1/secrets/{path}/restore: cancel a scheduled deletion', {
        body: Type.Object({}, { additionalProperties: false }),
        response: { 200: SecretMetadataSchema, ...errorResponses(Problem) },
      }),
    },
    async (request) => secrets.restore(actorContext(request), pathOf(request)),
  );

  app.post<PathParams & { Body: DestroyVersionsBodyWire }>(
    action('destroy'),
    {
      onRequest: adminOnPath,
      schema: schema('POST /v1/secrets/{path}/destroy: erase the values of versions for good, keeping their metadata', {
        body: DestroyVersionsBody,
        response: { 200: SecretVersionsSchema, ...errorResponses(Problem) },
      }),
    },
    async (request) => secrets.destroy(actorContext(request), pathOf(request), request.body.versions),
  );

  // A URL ending in an action word with a method that action does not take (PUT …/versions,
  // GET …/promote) names a path no secret may have: a 400 for that path, not a missing route.
  app.route({
    method: ['GET', 'PUT', 'DELETE', 'POST'],
    url: `${SECRET_ACTIONS_PREFIX}*`,
    schema: { hide: true },
    onRequest: deps.guard({
      family: 'secrets:read',
      qualified: (request) => {
        const [action = '', ...rest] = (request.params as { '*': string })['*'].split('/');
        assertSecretPath([...rest, action].join('/'));
        throw new AppError('ERR_ROUTE_NOT_FOUND', `no route ${request.method} ${redactKeys(request.url.split('?')[0] ?? '')}; see /openapi.json`);
      },
    }),
    handler: async () => undefined,
  });
}
