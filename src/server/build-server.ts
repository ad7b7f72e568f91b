/**
 * Builds the Fastify app apart from any listening socket, so tests drive it with `inject()`.
 * Bodies are validated strictly (no coercion, unknown fields refused); query strings and path
 * parameters are coerced from text. Response schemas whitelist every field that leaves.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import swagger from '@fastify/swagger';
import { Ajv } from 'ajv';
import type { IncidentService, KeyService } from '../keys/index.js';
import type { KekService, SecretService } from '../secrets/index.js';
import type { RotationPolicyService, RotationEngine } from '../rotation/index.js';
import type { Store } from '../store/index.js';
import { requestIdGenerator, type RandomBytes } from '../shared/ids.js';
import type { Clock } from '../shared/clock.js';
import type { AuditLog } from '../audit/index.js';
import type { AuditCheckpointsDeps } from './route-deps.js';
import { VerifyKeyBody, type VerifyKeyBodyWire } from '../contract/index.js';
import { createAuthGuard } from './plugins/auth.js';
import { createMetrics, httpRequestCounter, registerMetrics, type ServerMetrics } from './plugins/metrics.js';
import { chainLanes, createFastVerifyLane, fastLaneServerFactory, type FastVerifyLane } from './fast-verify.js';
import { createFastSecretReadLane } from './fast-secret-read.js';
import { registerProblemHandling } from './plugins/problem.js';
import type { RouteDeps } from './route-deps.js';
import { createKeyRoute } from './routes/keys/create.js';
import { listKeysRoute } from './routes/keys/list.js';
import { getKeyRoute } from './routes/keys/get.js';
import { verifyKeyRoute } from './routes/keys/verify.js';
import { createVerifyAnswerer, VERIFY_PATH } from './routes/keys/verify-answer.js';
import { rotateKeyRoute } from './routes/keys/rotate.js';
import { revokeKeyRoute } from './routes/keys/revoke.js';
import { keyStateRoutes } from './routes/keys/state.js';
import { updateKeyRoute } from './routes/keys/update.js';
import { keyUsageRoute } from './routes/keys/usage.js';
import { createTokenRoute } from './routes/tokens/create.js';
import { manageTokenRoutes } from './routes/tokens/manage.js';
import { listAuditRoute } from './routes/audit/list.js';
import { verifyAuditRoute } from './routes/audit/verify.js';
import { auditCheckpointRoutes } from './routes/audit/checkpoints.js';
import { healthRoutes } from './routes/system/health.js';
import { secretRoutes } from './routes/secrets/secrets.js';
import { rewriteSecretActionUrl } from './routes/secrets/action-url.js';
import { kekRoutes } from './routes/kek/kek.js';
import { rotationPolicyRoutes } from './routes/rotation/policies.js';
import { rotationRunRoutes } from './routes/rotation/runs.js';
import { incidentRoutes } from './routes/incidents/incidents.js';
import { publicOpenApi } from './openapi-paths.js';
import { recordRouteScopes } from './route-scopes.js';
import { createEventStreams, eventsRoute } from './routes/events/stream.js';
import { AuditTail } from '../audit/index.js';
import { AuthFailureTracker, DEFAULT_AUTH_FAILURES, type AuthFailureOptions } from './plugins/auth-failures.js';
import { AuthDenialTracker } from './plugins/auth-denials.js';
import { AppError } from '../shared/errors.js';
import { timeoutOptions, type ServerTimeouts } from './plugins/timeouts.js';
import { jsonDeeperThan, MAX_JSON_DEPTH } from '../shared/json-depth.js';

export const BODY_LIMIT = 1024 * 1024;

/** Paths the logger must never print. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  '*.key',
  '*.value',
  '*.secret',
  '*.token',
  'key',
  'value',
  'secret',
  'token',
];

export interface ServerDeps {
  readonly keys: KeyService;
  readonly incidents: IncidentService;
  readonly secrets: SecretService;
  readonly kek: KekService;
  readonly rotationPolicies: RotationPolicyService;
  readonly rotation: RotationEngine;
  readonly store: Store;
  readonly audit: AuditLog;
  /** The checkpoints file verify reads by default, and the checkpointer that writes to the sinks (none in tests unless given). */
  readonly auditCheckpoints?: AuditCheckpointsDeps;
  readonly clock: Clock;
  readonly random: RandomBytes;
  readonly metrics?: ServerMetrics;
  readonly logger?: FastifyServerOptions['logger'];
  readonly trustProxy?: boolean;
  readonly isReady?: () => boolean;
  readonly version?: string;
  /**
   * Answer `POST /v1/keys/verify` and cached vault reads in the fast lanes in front of Fastify
   * (src/server/fast-verify.ts, fast-secret-read.ts) when listening; default true. Off behind a trusted proxy, whose client address the lane
   * does not resolve. `inject()` never goes through it.
   */
  readonly fastVerify?: boolean;
  /** `GET /v1/events`: how often the shared tail reads the audit log (1 s) and how often an idle stream gets a keep-alive comment (15 s). */
  readonly events?: EventStreamOptions;
  /**
   * Failed authentication: aggregated in the audit log and throttled per address (see
   * plugins/auth-failures.ts), and refused scopes aggregated per principal, scope and route in the
   * same window and bound (plugins/auth-denials.ts; never throttled). Defaults apply when left
   * out; `false` writes every failure and every denial and never throttles.
   */
  readonly authFailures?: Partial<AuthFailureOptions> | false;
  /** How long a client may take to send a request; see `ServerTimeouts`. */
  readonly timeouts?: Partial<ServerTimeouts>;
}

export interface EventStreamOptions {
  readonly pollMs?: number;
  readonly heartbeatMs?: number;
}

/** The tracker behind the auth guard: audit events through the store, every failure counted in the metrics. */
function createFailureTracker(deps: ServerDeps, metrics: ServerMetrics, options: AuthFailureOptions, log: FastifyBaseLogger): AuthFailureTracker {
  const byReason = new Map<string, { inc(): void }>();
  return new AuthFailureTracker({
    clock: deps.clock,
    options,
    count: (reason) => {
      let counter = byReason.get(reason);
      if (counter === undefined) {
        counter = metrics.authFailures.child({ reason });
        byReason.set(reason, counter);
      }
      counter.inc();
    },
    onWriteError: (error, count) => log.error({ err: error, count }, 'could not write an aggregated auth.failed event'),
    write: async ({ info, count, window }) => {
      await deps.audit.record(
        deps.store.db,
        { actor: 'anonymous', requestId: info.requestId, sourceIp: info.ip },
        { action: 'auth.failed', target: info.target, data: { reason: info.reason, method: info.method, route: info.route, count, ...(window ? { window } : {}) } },
        new Date(deps.clock.now()).toISOString(),
      );
    },
  });
}

/** The tracker of refused scopes: same window and bound as failures; every denial counted in the metrics. */
function createDenialTracker(deps: ServerDeps, metrics: ServerMetrics, options: AuthFailureOptions, log: FastifyBaseLogger): AuthDenialTracker {
  return new AuthDenialTracker({
    clock: deps.clock,
    options: { windowMs: options.windowMs, maxEntries: options.maxAddresses },
    count: () => metrics.authDenials.inc(),
    onWriteError: (error, count) => log.error({ err: error, count }, 'could not write an aggregated auth.denied event'),
    write: async ({ info, count, window }) => {
      await deps.audit.record(
        deps.store.db,
        { actor: info.principalId, requestId: info.requestId, sourceIp: info.ip },
        { action: 'auth.denied', target: null, data: { requiredScope: info.requiredScope, method: info.method, route: info.route, count, ...(window ? { window } : {}) } },
        new Date(deps.clock.now()).toISOString(),
      );
    },
  });
}

export async function buildServer(deps: ServerDeps): Promise<FastifyInstance> {
  const metrics = deps.metrics ?? createMetrics({ defaultMetrics: false });
  const requestId = requestIdGenerator(deps.random);
  const fastVerify = (deps.fastVerify ?? true) && deps.trustProxy !== true;
  let lane: FastVerifyLane | undefined;
  const app = Fastify({
    logger: deps.logger ?? false,
    // Per-request lines are off: state changes are in the audit log, traffic in /metrics.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT,
    // Only the peer (our proxy) is trusted: the caller is the address it appended. Entries left of
    // it are whatever the client sent, so trusting them would let any caller pick its address
    // (the auth-failure throttle, IP allowlists).
    trustProxy: deps.trustProxy === true ? (_address: string, hop: number) => hop === 0 : false,
    genReqId: requestId,
    requestIdHeader: false,
    return503OnClosing: true,
    ...timeoutOptions(deps.timeouts),
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 600 },
    rewriteUrl: (req) => rewriteSecretActionUrl(req.url ?? '/'),
    ...(fastVerify ? { serverFactory: fastLaneServerFactory(() => lane) } : {}),
  });
  // Declared up front so every request object keeps one shape (V8 hidden classes) on the hot path.
  app.decorateRequest('principal', undefined);
  const strict = new Ajv({ allErrors: false, removeAdditional: false, useDefaults: true, coerceTypes: false, strict: false });
  const coercing = new Ajv({ allErrors: false, removeAdditional: false, useDefaults: true, coerceTypes: 'array', strict: false });
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? strict : coercing).compile(schema));

  // JSON only: any other content type is a 415, not a string for the schema to puzzle over.
  // A body nested deeper than any request needs is refused before anything recursive walks it.
  const defaultJsonParser = app.getDefaultJsonParser('error', 'error');
  const jsonParser: typeof defaultJsonParser = (request, body, done) => {
    if (typeof body === 'string' && jsonDeeperThan(body, MAX_JSON_DEPTH)) {
      done(new AppError('ERR_JSON_TOO_DEEP', `the request body nests arrays and objects more than ${MAX_JSON_DEPTH} levels deep`), undefined);
      return;
    }
    defaultJsonParser(request, body, done);
  };
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: BODY_LIMIT }, jsonParser);

  // Before swagger and the routes: each route's guard gives its OpenAPI security and the scope matrix.
  recordRouteScopes(app);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Keysmith API',
        version: deps.version ?? '0.1.0',
        description: 'Issue, verify, rotate and revoke API keys; keep versioned, envelope-encrypted secrets; every change is in a hash-chained audit log.',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'A management token (ksm_…); each operation names the scope it needs. See docs/scopes.md.' },
        },
      },
      security: [{ bearer: [] }],
    },
  });

  const events = createEventStreams(new AuditTail(deps.store.db, { pollMs: deps.events?.pollMs ?? 1_000 }), deps.events?.heartbeatMs ?? 15_000);
  // Open streams end before the server stops listening, so close() does not wait on them.
  app.addHook('preClose', (done) => {
    events.close();
    done();
  });
  const failureOptions = deps.authFailures === false ? undefined : { ...DEFAULT_AUTH_FAILURES, ...deps.authFailures };
  const failures = failureOptions === undefined ? undefined : createFailureTracker(deps, metrics, failureOptions, app.log);
  const denials = failureOptions === undefined ? undefined : createDenialTracker(deps, metrics, failureOptions, app.log);
  if (failures !== undefined && denials !== undefined && failureOptions !== undefined) {
    // Closed windows are written within a few seconds; the clock decides which have closed.
    const sweep = setInterval(() => {
      failures.sweep();
      denials.sweep();
    }, Math.min(failureOptions.windowMs, 5_000));
    sweep.unref();
    // After the server stops listening, before the store closes: no count is lost at stop.
    app.addHook('onClose', async () => {
      clearInterval(sweep);
      await Promise.all([failures.close(), denials.close()]);
    });
  }
  const routeDeps: RouteDeps = {
    keys: deps.keys,
    incidents: deps.incidents,
    secrets: deps.secrets,
    kek: deps.kek,
    rotationPolicies: deps.rotationPolicies,
    rotation: deps.rotation,
    store: deps.store,
    audit: deps.audit,
    auditCheckpoints: deps.auditCheckpoints ?? {},
    clock: deps.clock,
    metrics,
    guard: createAuthGuard({ keys: deps.keys, store: deps.store, audit: deps.audit, clock: deps.clock, failures, denials }),
    answerVerify: createVerifyAnswerer({ keys: deps.keys, metrics }),
    isReady: deps.isReady ?? (() => true),
    events,
  };
  registerProblemHandling(app, registerMetrics(app, metrics));
  healthRoutes(app, routeDeps);
  for (const register of [
    createKeyRoute,
    listKeysRoute,
    verifyKeyRoute,
    getKeyRoute,
    rotateKeyRoute,
    revokeKeyRoute,
    keyStateRoutes,
    updateKeyRoute,
    keyUsageRoute,
    createTokenRoute,
    manageTokenRoutes,
    listAuditRoute,
    verifyAuditRoute,
    auditCheckpointRoutes,
    secretRoutes,
    kekRoutes,
    rotationPolicyRoutes,
    rotationRunRoutes,
    eventsRoute,
    incidentRoutes,
  ]) {
    register(app, routeDeps);
  }
  app.get('/openapi.json', { schema: { hide: true } }, async () => publicOpenApi(app.swagger()));
  if (fastVerify) {
    // A throttled address is Fastify's to refuse (429 from the guard).
    const throttled = (ip: string | undefined): boolean => failures !== undefined && ip !== undefined && failures.retryAfter(ip) > 0;
    // The route's own parser, validator, answer and ids; see fast-verify.ts.
    const validBody = strict.compile<VerifyKeyBodyWire>(VerifyKeyBody);
    const verifyLane = createFastVerifyLane({
      keys: deps.keys,
      answer: routeDeps.answerVerify,
      parseJson: (text) => {
        let value: unknown;
        jsonParser(undefined as never, text, (error, body) => {
          value = error ? undefined : body;
        });
        return value;
      },
      validBody: (body): body is VerifyKeyBodyWire => validBody(body),
      requestId,
      counted: httpRequestCounter(metrics, 'POST', VERIFY_PATH, 200),
      throttled,
    });
    const readLane = createFastSecretReadLane({ keys: deps.keys, secrets: deps.secrets, requestId, counted: httpRequestCounter(metrics, 'GET', '/v1/secrets/*', 200), throttled });
    lane = chainLanes([verifyLane, readLane]);
    // Fastify answers 503 from the moment it starts closing; so must every request.
    app.addHook('preClose', (done) => {
      lane?.close();
      done();
    });
  }
  await app.ready();
  return app;
}
