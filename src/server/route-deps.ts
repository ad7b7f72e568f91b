/** What route modules receive: domain services and the auth guard, never the database driver. */
import type { onRequestHookHandler } from 'fastify';
import type { KekService, SecretService } from '../secrets/index.js';
import type { ScopeRequirement } from './plugins/auth.js';
import type { IncidentService, KeyService } from '../keys/index.js';
import type { RotationPolicyService, RotationEngine } from '../rotation/index.js';
import type { Store } from '../store/index.js';
import type { Clock } from '../shared/clock.js';
import type { AuditCheckpointer, AuditLog } from '../audit/index.js';
import type { ServerMetrics } from './plugins/metrics.js';
import type { VerifyAnswerer } from './routes/keys/verify-answer.js';
import type { EventStreams } from './routes/events/stream.js';

export interface RouteDeps {
  readonly keys: KeyService;
  readonly incidents: IncidentService;
  readonly secrets: SecretService;
  readonly kek: KekService;
  readonly rotationPolicies: RotationPolicyService;
  readonly rotation: RotationEngine;
  readonly store: Store;
  readonly audit: AuditLog;
  readonly auditCheckpoints: AuditCheckpointsDeps;
  readonly clock: Clock;
  readonly metrics: ServerMetrics;
  readonly guard: (requirement: ScopeRequirement) => onRequestHookHandler;
  /** The verify answer, shared by the route and the fast lane. */
  readonly answerVerify: VerifyAnswerer;
  /** The open event streams and the audit tail they share. */
  readonly events: EventStreams;
  /** Whether the server accepts traffic (false while draining). */
  readonly isReady: () => boolean;
}

export interface AuditCheckpointsDeps {
  /** The checkpoints file `POST /v1/audit/verify` holds the log to. */
  readonly file?: string | undefined;
  /** Writes on-demand checkpoints to the server's sinks; without it they are only returned. */
  readonly checkpointer?: AuditCheckpointer | undefined;
  /**
   * Test seam: awaited by `POST /v1/audit/verify` while it holds the server's one verification
   * slot, before it walks the chain, so a test can hold a verification open deterministically.
   */
  readonly verifyGate?: (() => Promise<void>) | undefined;
}
