/**
 * A whole Keysmith on a test store: key service with a fixed clock, a root token, and the
 * Fastify app for `inject()`.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { IncidentService, KeyService, DEFAULT_KEY_POLICY, type KeyPolicyConfig } from '../../src/keys/index.js';
import { createKeyHasher, createLocalKekProvider, deriveSecret, secureRandom, type KekProvider } from '../../src/crypto/index.js';
import { KekService, SecretService, type SecretPolicyConfig } from '../../src/secrets/index.js';
import { createRotationModule, type RotationEngine, type RotationEngineConfig, type RotationPolicyService, type Connector } from '../../src/rotation/index.js';
import { buildServer, createMetrics, type AuthFailureOptions, type EventStreamOptions, type ServerDeps } from '../../src/server/index.js';
import { ManualClock } from '../../src/shared/clock.js';
import type { DialectName as Dialect, Store } from '../../src/store/index.js';
import { createTestStore } from './databases.js';
import { AuditCheckpointer, createAuditLog, createFileSink, deriveAuditKeys, type AuditLog } from '../../src/audit/index.js';
import { createEgress, createProgramRegistry, type Outbound, type ProgramConfig, type Resolver } from '../../src/outbound/index.js';

export const TEST_MASTER_KEY = randomBytes(32);

/** The services a context's app runs on, for a test that builds a second server of its own (a listening one, other options). */
export type ServerServices = Pick<ServerDeps, 'keys' | 'incidents' | 'secrets' | 'kek' | 'rotationPolicies' | 'rotation' | 'store' | 'audit' | 'clock'>;

export function serverServices(ctx: TestContext): ServerServices {
  const { keys, incidents, secrets, kek, rotationPolicies, rotation, store, audit, clock } = ctx;
  return { keys, incidents, secrets, kek, rotationPolicies, rotation, store, audit, clock };
}

/** The audit log under TEST_MASTER_KEY's chain key, for tests that build a service of their own. */
export function testAuditLog(masterKey: Uint8Array = TEST_MASTER_KEY): AuditLog {
  return createAuditLog(deriveAuditKeys(masterKey));
}

export interface TestContext {
  readonly dialect: Dialect;
  readonly store: Store;
  readonly audit: AuditLog;
  readonly clock: ManualClock;
  readonly keys: KeyService;
  readonly incidents: IncidentService;
  readonly secrets: SecretService;
  readonly kek: KekService;
  readonly rotationPolicies: RotationPolicyService;
  /** The run engine; not started (tests call `tick()`), unless `startEngine`. */
  readonly rotation: RotationEngine;
  /** Writes checkpoints to `checkpointsFile`, when one was given. */
  readonly checkpointer: AuditCheckpointer | undefined;
  /** The egress allowlist and program registry the rotation module was given (from the options). */
  readonly outbound: Outbound;
  readonly app: FastifyInstance;
  /** A management token with scope `*`. */
  readonly rootToken: string;
  readonly rootTokenId: string;
  /** Issues a management token with the given scopes. */
  token(scopes: string[]): Promise<string>;
  /** `app.inject` with a bearer token (the root token unless given, none if null). */
  request(options: {
    method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
    url: string;
    body?: unknown;
    token?: string | null;
    headers?: Record<string, string>;
    payload?: string | Buffer;
  }): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

export interface TestContextOptions {
  readonly policy?: Partial<KeyPolicyConfig>;
  readonly start?: string;
  readonly secretPolicy?: Partial<SecretPolicyConfig>;
  /** The KEK provider; the local one under TEST_MASTER_KEY by default. */
  readonly kekProvider?: KekProvider;
  /** Engine settings; by default quick retries and checks, and no scheduler. */
  readonly engine?: Partial<RotationEngineConfig>;
  /** Extra connectors (a test may replace a built-in). */
  readonly connectors?: readonly Connector[];
  /** Event stream timings (`GET /v1/events`); the server's defaults unless given. */
  readonly events?: EventStreamOptions;
  /**
   * Failed-authentication aggregation and throttling; off unless given, so suites that check
   * one `auth.failed` event per refused call (the scope matrix) see each one.
   */
  readonly authFailures?: Partial<AuthFailureOptions>;
  /** A checkpoints file: the app verifies against it and writes on-demand checkpoints to it (none by default). */
  readonly checkpointsFile?: string;
  /** Awaited by `POST /v1/audit/verify` while it holds the server's verification slot (a test holds it open). */
  readonly auditVerifyGate?: () => Promise<void>;
  /** Registered programs (the configuration file's `programs`); none by default. */
  readonly programs?: readonly ProgramConfig[];
  /** The egress allowlist (the file's `egress.allow`) and a DNS stand-in; nothing allowed by default. */
  readonly egress?: { readonly allow: readonly string[]; readonly resolver?: Resolver };
  /** Take the caller's address from X-Forwarded-For (KEYSMITH_TRUST_PROXY); off by default. */
  readonly trustProxy?: boolean;
}

/** Engine timings for tests: retries and checks in milliseconds, not minutes. */
export const TEST_ENGINE_CONFIG: Partial<RotationEngineConfig> = {
  tickMs: 50,
  leaseMs: 2000,
  retryBaseMs: 10,
  maxBackoffMs: 50,
  trafficCheckMs: 1000,
  checks: { intervalMs: 5, timeoutMs: 2000 },
  scheduler: false,
};

/** The egress allowlist and program registry a test context's rotation module gets. */
export function testOutbound(options: Pick<TestContextOptions, 'programs' | 'egress'>): Outbound {
  return {
    egress: createEgress({ allow: options.egress?.allow ?? [], ...(options.egress?.resolver ? { resolver: options.egress.resolver } : {}) }),
    programs: createProgramRegistry(options.programs ?? []),
  };
}

export async function createTestContext(dialect: Dialect, options: TestContextOptions = {}): Promise<TestContext> {
  const testStore = await createTestStore(dialect);
  const clock = new ManualClock(options.start ?? '2026-11-01T00:00:00.000Z');
  const audit = testAuditLog();
  const keys = new KeyService({
    db: testStore.store.db,
    audit,
    dialect: testStore.store.dialect,
    clock,
    random: secureRandom,
    hasher: createKeyHasher(TEST_MASTER_KEY),
    config: { ...DEFAULT_KEY_POLICY, ...options.policy },
  });
  const incidents = new IncidentService({ db: testStore.store.db, audit, dialect: testStore.store.dialect, clock, random: secureRandom, keys });
  const kek = new KekService({ db: testStore.store.db, audit, dialect: testStore.store.dialect, clock, kek: options.kekProvider ?? createLocalKekProvider(TEST_MASTER_KEY, secureRandom) });
  await kek.initialise();
  await audit.keyChain(testStore.store.db, new Date(clock.now()).toISOString());
  const secrets = new SecretService({
    db: testStore.store.db,
    audit,
    dialect: testStore.store.dialect,
    clock,
    random: secureRandom,
    kek,
    digestKey: deriveSecret(TEST_MASTER_KEY, 'secret-digest:v1'),
    config: options.secretPolicy ?? {},
  });
  const outbound = testOutbound(options);
  const rotationModule = createRotationModule({
    db: testStore.store.db,
    audit,
    dialect: testStore.store.dialect,
    clock,
    random: secureRandom,
    keys,
    secrets,
    runSecret: deriveSecret(TEST_MASTER_KEY, 'rotation-run:v1'),
    engine: { ...TEST_ENGINE_CONFIG, ...options.engine },
    ...(options.connectors ? { connectors: options.connectors } : {}),
    outbound,
  });
  const rotationPolicies = rotationModule.policies;
  const rotation = rotationModule.engine;
  const checkpointer = options.checkpointsFile
    ? new AuditCheckpointer({ db: testStore.store.db, audit, clock, sinks: [createFileSink(options.checkpointsFile)] })
    : undefined;
  const app = await buildServer({
    keys,
    incidents,
    secrets,
    kek,
    rotationPolicies,
    rotation,
    store: testStore.store,
    audit,
    auditCheckpoints: { file: options.checkpointsFile, checkpointer, verifyGate: options.auditVerifyGate },
    clock,
    random: secureRandom,
    metrics: createMetrics({ defaultMetrics: false }),
    ...(options.events ? { events: options.events } : {}),
    authFailures: options.authFailures ?? false,
    ...(options.trustProxy !== undefined ? { trustProxy: options.trustProxy } : {}),
  });
  const root = await keys.issueToken({ actor: 'system:test' }, ['*'], { scopes: ['*'], owner: 'root', ttl: '90d' });
  const context: TestContext = {
    dialect,
    store: testStore.store,
    audit,
    clock,
    keys,
    incidents,
    secrets,
    kek,
    rotationPolicies,
    rotation,
    checkpointer,
    outbound,
    app,
    rootToken: root.key,
    rootTokenId: root.record.id,
    async token(scopes) {
      const issued = await keys.issueToken({ actor: root.record.id }, ['*'], { scopes, owner: 'test' });
      return issued.key;
    },
    request({ method, url, body, token, headers, payload }) {
      const bearer = token === undefined ? root.key : token;
      return app.inject({
        method,
        url,
        headers: {
          ...(bearer === null ? {} : { authorization: `Bearer ${bearer}` }),
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...headers,
        },
        ...(payload !== undefined ? { payload } : body !== undefined ? { payload: JSON.stringify(body) } : {}),
      });
    },
    async close() {
      await rotation.stop().catch(() => undefined);
      await app.close();
      await keys.usage.stop().catch(() => undefined);
      await kek.stop().catch(() => undefined);
      await secrets.stop().catch(() => undefined);
      await testStore.cleanup();
    },
  };
  return context;
}
