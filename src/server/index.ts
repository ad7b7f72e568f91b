export { buildServer, BODY_LIMIT, REDACT_PATHS, type ServerDeps, type EventStreamOptions } from './build-server.js';
export { DEFAULT_TIMEOUTS, type ServerTimeouts } from './plugins/timeouts.js';
export { createMetrics, type ServerMetrics } from './plugins/metrics.js';
export { DEFAULT_AUTH_FAILURES, type AuthFailureOptions } from './plugins/auth-failures.js';
export { publicRoute, type RouteScope } from './route-scopes.js';
export { requirementLabel, type ScopeRequirement } from './plugins/auth.js';
