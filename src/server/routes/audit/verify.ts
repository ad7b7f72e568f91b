import type { FastifyInstance } from 'fastify';
import { ChainVerificationSchema, Problem, VerifyAuditBody, type VerifyAuditBodyWire } from '../../../contract/index.js';
import { readCheckpointFile, type CheckpointEntry } from '../../../audit/index.js';
import type { RouteDeps } from '../../route-deps.js';
import { errorResponses } from '../responses.js';

export function verifyAuditRoute(app: FastifyInstance, deps: RouteDeps): void {
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
        summary: "Check the keyed chain against the server's checkpoints file and any checkpoints sent, and name the first bad event or checkpoint",
        body: VerifyAuditBody,
        response: { 200: ChainVerificationSchema, ...errorResponses(Problem) },
      },
    },
    async (request) => {
      const file = deps.auditCheckpoints.file;
      const given: CheckpointEntry[] = (request.body?.checkpoints ?? []).map((checkpoint, i) => ({ source: 'request', line: i + 1, checkpoint }));
      return deps.audit.verify(deps.store.db, { checkpoints: [...(file ? readCheckpointFile(file) : []), ...given] });
    },
  );
}
