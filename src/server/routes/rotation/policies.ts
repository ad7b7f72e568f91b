/**
 * Rotation policies as code over HTTP: list, read, put (create or replace, check-and-set on
 * `version`) and delete. The body schema refuses malformed policies (400); the service refuses
 * unsafe ones (422) naming each field.
 */
import type { FastifyInstance } from 'fastify';
import {
  DeleteRotationPolicyQuery,
  DeletedRotationPolicySchema,
  PolicyNameParam,
  Problem,
  PutRotationPolicyBody,
  PutRotationPolicyResultSchema,
  RotationPolicyListSchema,
  RotationPolicyRecordSchema,
  type DeleteRotationPolicyQueryWire,
  type PutRotationPolicyBodyWire,
} from '../../../contract/index.js';
import { actorContext } from '../../plugins/auth.js';
import type { RouteDeps } from '../../route-deps.js';
import { errorResponses } from '../responses.js';

type NameParams = { Params: { name: string } };
const tags = ['rotation'];

export function rotationPolicyRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const policies = deps.rotationPolicies;
  const read = deps.guard('rotation:read');
  const write = deps.guard('rotation:write');

  app.get(
    '/v1/rotation/policies',
    { onRequest: read, schema: { tags, summary: 'Every rotation policy, by name', response: { 200: RotationPolicyListSchema, ...errorResponses(Problem) } } },
    async () => ({ data: await policies.list() }),
  );

  app.get<NameParams>(
    '/v1/rotation/policies/:name',
    {
      onRequest: read,
      schema: { tags, summary: 'One rotation policy with its version', params: PolicyNameParam, response: { 200: RotationPolicyRecordSchema, ...errorResponses(Problem) } },
    },
    async (request) => policies.get(request.params.name),
  );

  app.put<NameParams & { Body: PutRotationPolicyBodyWire }>(
    '/v1/rotation/policies/:name',
    {
      onRequest: write,
      schema: {
        tags,
        summary: 'Create or replace a rotation policy (201 when created); a put that changes nothing writes nothing',
        description: 'The policy runs as the token that puts it: besides rotation:write, the token needs every scope the policy uses (rotation:run; read and write on a target secret; keys:rotate for keys; write on deliverTo; read on adminSecret and settings.secrets). A 403 names each missing scope and its field. See docs/scopes.md.',
        params: PolicyNameParam,
        body: PutRotationPolicyBody,
        response: { 200: PutRotationPolicyResultSchema, 201: PutRotationPolicyResultSchema, ...errorResponses(Problem) },
      },
    },
    async (request, reply) => {
      // The policy will act as this token: the service refuses one that needs a scope it lacks.
      const author = { ...actorContext(request), scopes: request.principal?.scopes ?? [] };
      const result = await policies.put(author, request.params.name, request.body.policy, request.body.version);
      return reply.code(result.created ? 201 : 200).send(result);
    },
  );

  app.delete<NameParams & { Querystring: DeleteRotationPolicyQueryWire }>(
    '/v1/rotation/policies/:name',
    {
      onRequest: write,
      schema: {
        tags,
        summary: 'Delete a rotation policy',
        params: PolicyNameParam,
        querystring: DeleteRotationPolicyQuery,
        response: { 200: DeletedRotationPolicySchema, ...errorResponses(Problem) },
      },
    },
    async (request) => policies.delete(actorContext(request), request.params.name, request.query.version),
  );
}
