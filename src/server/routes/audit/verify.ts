/**
 * `POST /v1/audit/verify` walks the whole chain and checks every checkpoint signature: the most
 * expensive call a reader can make. One runs at a time per server (a second, while one runs, is
 * answered 429 with `Retry-After: 1` instead of queueing, so callers cannot stack them up), and a
 * body carries at most MAX_REQUEST_CHECKPOINTS checkpoints (contract/audit.ts).
 */
import type { FastifyInstance } from 'fastify';
import { ChainVerificationSchema, Problem, VerifyAuditBody, type VerifyAuditBodyWire } from '../../../contract/index.js';
import { readCheckpointFile, type CheckpointEntry } from '../../../audit/index.js';
import { AppError } from '../../../shared/errors.js';
import type { RouteDeps } from '../../route-deps.js';
import { errorResponses } from '../responses.js';

export function verifyAuditRoute(app: FastifyInstance, deps: RouteDeps): void {
  // Per server (per buildServer), in process: the slot is taken and given back synchronously
  // around the walk, so there is no window in which two verifications both see it free.
  let running = false;
  app.post<{ Body: VerifyAuditBodyWire | undefined }>(
    '/v1/audit/verify',
    {
      onRequest: deps.guard('audit:read'),
      // A bare POST (as before checkpoints could be sent) is an empty body.
      preValidation: (request, _reply, done) => {
        if (request.body === undefined || request.body === null) request.body = {};
        done();
      },
      schema: {
        tags: ['audit'],
        summary: "Check the keyed chain against the server's checkpoints file and any checkpoints sent (at most 1,000), and name the first bad event or checkpoint; one verification at a time per server",
        body: VerifyAuditBody,
        response: { 200: ChainVerificationSchema, ...errorResponses(Problem) },
      },
    },
    async (request, reply) => {
      if (running) {
        reply.header('retry-after', '1');
        throw new AppError('ERR_RATE_LIMITED', 'an audit verification is already running on this server; try again in 1 s');
      }
      running = true;
      try {
        await deps.auditCheckpoints.verifyGate?.();
        const file = deps.auditCheckpoints.file;
        const given: CheckpointEntry[] = (request.body?.checkpoints ?? []).map((checkpoint, i) => ({ source: 'request', line: i + 1, checkpoint }));
        return await deps.audit.verify(deps.store.db, { checkpoints: [...(file ? readCheckpointFile(file) : []), ...given] });
      } finally {
        running = false;
      }
    },
  );
}
