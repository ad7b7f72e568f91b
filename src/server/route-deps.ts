/** What route modules receive: domain services and the auth guard, never the database driver. */
import type { onRequestHookHandler } from 'fastify';
import type { KekService, SecretService } from '../secrets/index.js';
import type { ScopeRequirement } from './plugins/auth.js';
import type { KeyService } from '../keys/index.js';
import type { Store } from '../store/index.js';
import type { Clock } from '../shared/clock.js';
import type { ServerMetrics } from './plugins/metrics.js';

export interface RouteDeps {
  readonly keys: KeyService;
  readonly secrets: SecretService;
  readonly kek: KekService;
  readonly store: Store;
  readonly clock: Clock;
  readonly metrics: ServerMetrics;
  readonly guard: (requirement: ScopeRequirement) => onRequestHookHandler;
  /** Whether the server accepts traffic (false while draining). */
  readonly isReady: () => boolean;
}
