/**
 * Break-glass incidents over HTTP. `POST /v1/incidents` plans (dryRun: 200 with the plan) or
 * applies (201 with the incident record, and for rotate every new key, shown once) a mass
 * revocation or rotation; the work runs within the request, in batched transactions.
 */
import type { FastifyInstance } from 'fastify';
import {
  CreateIncidentBody,
  IncidentIdParam,
  IncidentPageSchema,
  IncidentPlanSchema,
  IncidentRecordSchema,
  IncidentResultSchema,
  INCIDENT_PLAN_LIST_MAX,
  ListIncidentsQuery,
  Problem,
  type CreateIncidentBodyWire,
  type ListIncidentsQueryWire,
} from '../../../contract/index.js';
import { actorContext } from '../../plugins/auth.js';
import type { RouteDeps } from '../../route-deps.js';
import { errorResponses } from '../responses.js';
import { AppError } from '../../../shared/errors.js';

const tags = ['incidents'];

export function incidentRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const incidents = deps.incidents;

  app.post<{ Body: CreateIncidentBodyWire }>(
    '/v1/incidents',
    {
      onRequest: deps.guard('incidents:write'),
      schema: {
        tags,
        summary: 'Revoke or rotate every service key a selector picks (dryRun: only the plan)',
        body: CreateIncidentBody,
        response: { 200: IncidentPlanSchema, 201: IncidentResultSchema, ...errorResponses(Problem) },
      },
    },
    async (request, reply) => {
      const { action, select, reason, overlap, dryRun } = request.body;
      if (overlap !== undefined && action !== 'rotate') {
        throw new AppError('ERR_INVALID_REQUEST', 'overlap applies to rotate only', { details: [{ field: 'overlap', message: 'only with action rotate' }] });
      }
      if (dryRun === true) {
        if (action === 'rotate') deps.keys.overlapOf(overlap);
        const plan = await incidents.plan(action, select);
        return reply.code(200).send({
          dryRun: true,
          action,
          select: plan.select,
          total: plan.total,
          keys: plan.keys.slice(0, INCIDENT_PLAN_LIST_MAX),
          truncated: plan.total > INCIDENT_PLAN_LIST_MAX,
        });
      }
      const ctx = actorContext(request);
      if (action === 'revoke') {
        const result = await incidents.revoke(ctx, select, reason);
        return reply.code(201).send(result);
      }
      const result = await incidents.rotate(ctx, select, reason, overlap);
      return reply.code(201).header('cache-control', 'no-store').send(result);
    },
  );

  app.get<{ Querystring: ListIncidentsQueryWire }>(
    '/v1/incidents',
    {
      onRequest: deps.guard('incidents:read'),
      schema: { tags, summary: 'Incidents, newest first', querystring: ListIncidentsQuery, response: { 200: IncidentPageSchema, ...errorResponses(Problem) } },
    },
    async (request) => incidents.list({ ...(request.query.limit !== undefined ? { limit: request.query.limit } : {}), ...(request.query.cursor !== undefined ? { cursor: request.query.cursor } : {}) }),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/incidents/:id',
    {
      onRequest: deps.guard('incidents:read'),
      schema: { tags, summary: 'One incident', params: IncidentIdParam, response: { 200: IncidentRecordSchema, ...errorResponses(Problem) } },
    },
    async (request) => incidents.get(request.params.id),
  );
}
