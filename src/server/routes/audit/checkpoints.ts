/**
 * Checkpoints on demand, and the key that verifies them. Both need `audit:read`: a checkpoint
 * tells only the head's seq and hash, which `GET /v1/audit` already shows to that scope, and
 * the server writes a head to its sinks once (asking again adds nothing), and a moved head at
 * most once a second per server (sooner is 429 with Retry-After), so a reader cannot fill the
 * checkpoints file, not even by alternating checkpoints with calls that write audit events.
 */
import type { FastifyInstance } from 'fastify';
import { CheckpointKeySchema, Problem, WrittenCheckpointSchema } from '../../../contract/index.js';
import { CheckpointTooSoon, formatCheckpoint } from '../../../audit/index.js';
import { AppError } from '../../../shared/errors.js';
import type { RouteDeps } from '../../route-deps.js';
import { errorResponses } from '../responses.js';

/** On-demand lines written at most this often per server (the periodic checkpointer is not bound by it). */
export const ON_DEMAND_CHECKPOINT_GAP_MS = 1_000;

export function auditCheckpointRoutes(app: FastifyInstance, deps: RouteDeps): void {
  app.post(
    '/v1/audit/checkpoints',
    {
      onRequest: deps.guard('audit:read'),
      schema: {
        tags: ['audit'],
        summary: "Sign the audit head now and write it to the server's checkpoint sinks (once per head, at most once a second)",
        response: { 200: WrittenCheckpointSchema, ...errorResponses(Problem) },
      },
    },
    async (_request, reply) => {
      const checkpointer = deps.auditCheckpoints.checkpointer;
      if (checkpointer) {
        const written = await checkpointer.checkpoint({ minGapMs: ON_DEMAND_CHECKPOINT_GAP_MS }).catch((error: unknown) => {
          if (!(error instanceof CheckpointTooSoon)) throw error;
          const wait = Math.max(1, Math.ceil(error.retryAfterMs / 1000));
          reply.header('retry-after', String(wait));
          throw new AppError('ERR_RATE_LIMITED', `a checkpoint was written less than a second ago; try again in ${wait} s`);
        });
        if (!written) throw new AppError('ERR_AUDIT_CHECKPOINT_REFUSED', 'the audit log is empty: there is no head to checkpoint');
        return written;
      }
      const checkpoint = await deps.audit.checkpoint(deps.store.db, new Date(deps.clock.now()).toISOString());
      if (!checkpoint) throw new AppError('ERR_AUDIT_CHECKPOINT_REFUSED', 'the audit log is empty: there is no head to checkpoint');
      return { checkpoint, line: formatCheckpoint(checkpoint), sinks: [] };
    },
  );

  app.get(
    '/v1/audit/checkpoint-key',
    {
      onRequest: deps.guard('audit:read'),
      schema: {
        tags: ['audit'],
        summary: 'The Ed25519 public key that verifies audit checkpoints',
        response: { 200: CheckpointKeySchema, ...errorResponses(Problem) },
      },
    },
    async () => checkpointKeyAnswer(deps.audit.publicKey),
  );
}

export function checkpointKeyAnswer(key: { keyId: string; base64: string; pem: string; fingerprint: string }) {
  return { keyId: key.keyId, algorithm: 'Ed25519' as const, publicKey: key.base64, pem: key.pem, fingerprint: key.fingerprint };
}
