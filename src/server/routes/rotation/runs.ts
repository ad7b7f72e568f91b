/**
 * Rotation runs over HTTP: start one (a person, or automation such as a leak report), list and
 * read runs with their timeline, roll a finished run back, and the rotation figures. Starting
 * and rolling back need `rotation:run`; reading needs `rotation:read`.
 */
import type { FastifyInstance } from 'fastify';
import {
  ListRotationRunsQuery,
  Problem,
  RotationRunDetailSchema,
  RotationRunListSchema,
  RotationRunSchema,
  RotationStatsSchema,
  RunIdParam,
  StartRotationBody,
  type ListRotationRunsQueryWire,
  type StartRotationBodyWire,
} from '../../../contract/index.js';
import { actorContext } from '../../plugins/auth.js';
import type { RouteDeps } from '../../route-deps.js';
import { errorResponses } from '../responses.js';
import { renderGauge } from '../../plugins/metrics.js';
import type { RotationStats } from '../../../rotation/index.js';

type IdParams = { Params: { id: string } };
const tags = ['rotation'];

export function rotationRunRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const engine = deps.rotation;
  const read = deps.guard('rotation:read');
  const run = deps.guard('rotation:run');
  deps.metrics.addCollector(async () => rotationMetrics(await engine.stats()));

  app.post<{ Body: StartRotationBodyWire }>(
    '/v1/rotations',
    {
      onRequest: run,
      schema: {
        tags,
        summary: 'Start a rotation now (201); 409 names the run already rotating the target',
        description: "Besides rotation:run, the caller needs the scope to change the target (secrets:write on a secret, keys:rotate on a key). A policy's run then checks its author's token before any connector call.",
        body: StartRotationBody,
        response: { 201: RotationRunSchema, ...errorResponses(Problem) },
      },
    },
    async (request, reply) => {
      const { trigger, ...rest } = request.body;
      // The caller must be able to change the target itself; the policy's author is checked when the run starts.
      const started = await engine.trigger(actorContext(request), { ...rest, trigger: trigger ?? 'event', grant: request.principal?.scopes ?? [] });
      return reply.code(201).send(started);
    },
  );

  app.get<{ Querystring: ListRotationRunsQueryWire }>(
    '/v1/rotations',
    { onRequest: read, schema: { tags, summary: 'Runs, newest first', querystring: ListRotationRunsQuery, response: { 200: RotationRunListSchema, ...errorResponses(Problem) } } },
    async (request) => engine.list(request.query),
  );

  app.get(
    '/v1/rotation/stats',
    { onRequest: read, schema: { tags, summary: 'Success rate, median time to rotate, rollbacks, revocations owed', response: { 200: RotationStatsSchema, ...errorResponses(Problem) } } },
    async () => engine.stats(),
  );

  app.get<IdParams>(
    '/v1/rotations/:id',
    { onRequest: read, schema: { tags, summary: 'A run with its timeline and revocations', params: RunIdParam, response: { 200: RotationRunDetailSchema, ...errorResponses(Problem) } } },
    async (request) => engine.get(request.params.id),
  );

  app.post<IdParams>(
    '/v1/rotations/:id/rollback',
    {
      onRequest: run,
      schema: {
        tags,
        summary: 'Undo a run that ended done, while its old credential is not yet revoked',
        params: RunIdParam,
        response: { 200: RotationRunDetailSchema, ...errorResponses(Problem) },
      },
    },
    async (request) => engine.rollback(actorContext(request), request.params.id, request.principal?.scopes ?? []),
  );
}

/** The seed's rotation figures for Prometheus, read from the database at scrape time. */
function rotationMetrics(stats: RotationStats): string {
  return [
    renderGauge(
      'keysmith_rotation_runs',
      'Rotation runs by status',
      Object.entries(stats.runs).map(([status, value]) => ({ labels: { status }, value })),
    ),
    renderGauge('keysmith_rotation_success_ratio', 'Finished rotation runs that ended done', [{ value: stats.successRate }]),
    renderGauge(
      'keysmith_rotation_median_seconds',
      'Median seconds from the start of a run to its new credential being current, by how runs started',
      Object.entries(stats.medianSecondsToRotate).map(([trigger, value]) => ({ labels: { trigger }, value })),
    ),
    renderGauge('keysmith_rotation_rolled_back', 'Rotation runs rolled back', [{ value: stats.rolledBack }]),
    renderGauge('keysmith_rotation_revocations_owed', 'Old credentials still awaiting revocation', [{ value: stats.awaitingRevocation }]),
  ].join('\n');
}
