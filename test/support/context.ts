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
import { buildServer, createMetrics, type AuthFailureOptions, type EventStreamOptions } from '../../src/server/index.js';
import { ManualClock } from '../../src/shared/clock.js';
import type { Dialect, Store } from '../../src/store/index.js';
import { createTestStore } from './databases.js';

export const TEST_MASTER_KEY = randomBytes(32);

export interface TestContext {
  readonly dialect: Dialect;
  readonly store: Store;
  readonly clock: ManualClock;
  readonly keys: KeyService;
  readonly incidents: IncidentService;
  readonly secrets: SecretService;
  readonly kek: KekService;
  readonly rotationPolicies: RotationPolicyService;
  /** The run engine; not started (tests call `tick()`), unless `startEngine`. */
  readonly rotation: RotationEngine;
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

export async function createTestContext(dialect: Dialect, options: TestContextOptions = {}): Promise<TestContext> {
  const testStore = await createTestStore(dialect);
  const clock = new ManualClock(options.start ?? '2026-11-01T00:00:00.000Z');
  const keys = new KeyService({
    db: testStore.store.db,
    dialect,
    clock,
    random: secureRandom,
    hasher: createKeyHasher(TEST_MASTER_KEY),
    config: { ...DEFAULT_KEY_POLICY, ...options.policy },
  });
  const incidents = new IncidentService({ db: testStore.store.db, dialect, clock, random: secureRandom, keys });
  const kek = new KekService({ db: testStore.store.db, dialect, clock, kek: options.kekProvider ?? createLocalKekProvider(TEST_MASTER_KEY, secureRandom) });
  await kek.initialise();
  const secrets = new SecretService({
    db: testStore.store.db,
    dialect,
    clock,
    random: secureRandom,
    kek,
    digestKey: deriveSecret(TEST_MASTER_KEY, 'secret-digest:v1'),
    config: options.secretPolicy ?? {},
  });
  const rotationModule = createRotationModule({
    db: testStore.store.db,
    dialect,
    clock,
    random: secureRandom,
    keys,
    secrets,
    runSecret: deriveSecret(TEST_MASTER_KEY, 'rotation-run:v1'),
    engine: { ...TEST_ENGINE_CONFIG, ...options.engine },
    ...(options.connectors ? { connectors: options.connectors } : {}),
  });
  const rotationPolicies = rotationModule.policies;
  const rotation = rotationModule.engine;
  const app = await buildServer({
    keys,
    incidents,
    secrets,
    kek,
    rotationPolicies,
    rotation,
    store: testStore.store,
    clock,
    random: secureRandom,
    metrics: createMetrics({ defaultMetrics: false }),
    ...(options.events ? { events: options.events } : {}),
    authFailures: options.authFailures ?? false,
  });
  const root = await keys.issueToken({ actor: 'system:test' }, ['*'], { scopes: ['*'], owner: 'root', ttl: '90d' });
  const context: TestContext = {
    dialect,
    store: testStore.store,
    clock,
    keys,
    incidents,
    secrets,
    kek,
    rotationPolicies,
    rotation,
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
