/**
 * Helpers for rotation-run tests: a programmable health endpoint, the fake vendor's http
 * connector settings, and `drive`, which ticks an engine (advancing the manual clock over waits
 * when asked) until a run ends.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'vitest';
import { ConnectorError, type ConnectorContext, type CredentialValue } from '../../src/rotation/index.js';
import { createRotationModule, type RotationEngine, type RunDetail } from '../../src/rotation/index.js';
import { deriveSecret, secureRandom } from '../../src/crypto/index.js';
import { TEST_ENGINE_CONFIG, TEST_MASTER_KEY, type TestContext } from './context.js';
import type { FakeVendor } from './fake-vendor.js';

export interface HealthEndpoint {
  readonly url: string;
  /** Statuses to answer, in order; the last repeats. */
  answer(...statuses: number[]): void;
  /** Holds every request until `release()` (or the server closes). */
  hold(): void;
  release(): void;
  readonly hits: number;
  /** Requests held and not yet answered. */
  readonly pending: number;
  close(): Promise<void>;
}

export async function startHealthEndpoint(): Promise<HealthEndpoint> {
  let statuses = [200];
  let hits = 0;
  let held: Array<() => void> | undefined;
  const server: Server = createServer((req, res) => {
    req.resume();
    const reply = () => {
      hits += 1;
      const status = statuses.length > 1 ? statuses.shift()! : statuses[0]!;
      res.writeHead(status, { 'content-type': 'text/plain' }).end(String(status));
    };
    if (held) held.push(reply);
    else reply();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/health`,
    answer: (...next) => {
      statuses = next.length > 0 ? next : [200];
    },
    hold: () => {
      held = [];
    },
    release: () => {
      const waiting = held ?? [];
      held = undefined;
      for (const reply of waiting) reply();
    },
    get hits() {
      return hits;
    },
    get pending() {
      return held?.length ?? 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The fake vendor as an http connector template, its admin token at `adminPath`. */
export function vendorSettings(vendor: FakeVendor, adminPath = 'vendors/acme/admin'): Record<string, unknown> {
  return {
    adminSecret: adminPath,
    create: {
      method: 'POST',
      url: `${vendor.url}/keys`,
      headers: { Authorization: 'Bearer {{admin}}' },
      body: { name: 'keysmith-{{runId}}' },
      key: '$.secret',
      id: '$.id',
    },
    test: { method: 'GET', url: `${vendor.url}/me`, headers: { Authorization: 'Bearer {{key}}' }, expect: 200 },
    revoke: { method: 'DELETE', url: `${vendor.url}/keys/{{vendorId}}`, headers: { Authorization: 'Bearer {{admin}}' } },
  };
}

/** Whether the fake vendor accepts a key (`GET /me` answers 200). */
export async function vendorAccepts(vendor: FakeVendor, secret: string): Promise<boolean> {
  const response = await fetch(`${vendor.url}/me`, { headers: { authorization: `Bearer ${secret}` } });
  await response.body?.cancel();
  return response.status === 200;
}

export interface DriveOptions {
  /** Move the manual clock to the next due time when nothing is due now. */
  readonly advance?: boolean;
  /** Stop when this holds (checked after each tick). */
  readonly until?: (run: RunDetail) => boolean;
  readonly maxTicks?: number;
}

/**
 * Ticks the engine until the run ends and owes no revocation due by then (or `until` holds).
 * With `advance`, waits are skipped by moving the clock; without, the loop stops at a wait.
 */
export async function drive(ctx: TestContext, runId: string, options: DriveOptions = {}): Promise<RunDetail> {
  const maxTicks = options.maxTicks ?? 60;
  let run = await ctx.rotation.get(runId);
  for (let tick = 0; tick < maxTicks; tick += 1) {
    await ctx.rotation.tick();
    run = await ctx.rotation.get(runId);
    if (options.until?.(run)) return run;
    const owed = run.revocations.filter((revocation) => revocation.status === 'waiting');
    if (run.status !== 'running' && owed.length === 0 && !options.until) return run;
    const nextTimes = [...(run.status === 'running' && run.nextAt ? [run.nextAt] : []), ...owed.map((revocation) => revocation.nextAt)];
    const next = nextTimes.sort()[0];
    if (next !== undefined && Date.parse(next) > ctx.clock.now()) {
      if (!options.advance) return run;
      ctx.clock.set(next);
    }
  }
  return run;
}

export const VENDOR_SECRET_PATH = 'vendors/acme/api-key';
const ADMIN = { actor: 'prn_admin' };

/** The author of policies a test puts on the service: the root token (a policy acts as a real token, re-checked at each run). */
export function policyAuthor(ctx: Pick<TestContext, 'rootTokenId'>): { actor: string; scopes: string[] } {
  return { actor: ctx.rootTokenId, scopes: ['*'] };
}

/**
 * A vendor key in use (vault current at VENDOR_SECRET_PATH, with its vendor id), the vendor's
 * admin token in the vault, and a policy `acme` that rotates the key through the http connector.
 */
export async function vendorRotationSetup(ctx: TestContext, vendor: FakeVendor, policy: Record<string, unknown> = {}) {
  await ctx.secrets.put(ADMIN, 'vendors/acme/admin', { value: vendor.adminToken });
  const seeded = vendor.seedKey();
  const put = await ctx.secrets.put(ADMIN, VENDOR_SECRET_PATH, { value: seeded.secret, vendorId: seeded.id });
  await ctx.rotationPolicies.put(policyAuthor(ctx), 'acme', {
    name: 'acme',
    target: { secret: VENDOR_SECRET_PATH },
    schedule: { every: '30d' },
    overlap: '1h',
    connector: { type: 'http', settings: vendorSettings(vendor) },
    ...policy,
  });
  return { seeded, version: put.version };
}

/** Another engine on the test context's store (a second server, or the same one restarted). */
export function secondEngine(ctx: TestContext): RotationEngine {
  return createRotationModule({
    db: ctx.store.db,
    audit: ctx.audit,
    dialect: ctx.store.dialect,
    clock: ctx.clock,
    random: secureRandom,
    keys: ctx.keys,
    secrets: ctx.secrets,
    runSecret: deriveSecret(TEST_MASTER_KEY, 'rotation-run:v1'),
    engine: TEST_ENGINE_CONFIG,
    outbound: ctx.outbound,
  }).engine;
}

/** A connector context whose only vault value is the vendor admin credential at `vendors/acme/admin`. */
export function adminContext(runId: string, settings: Record<string, unknown>, admin: CredentialValue): ConnectorContext {
  return {
    runId,
    settings,
    readSecret: async (path) => {
      if (path === 'vendors/acme/admin') return admin;
      throw new Error(`no secret at ${path}`);
    },
  };
}

/** The ConnectorError a promise rejects with (failing the test if it resolves or throws anything else). */
export async function connectorError(promise: Promise<unknown>): Promise<ConnectorError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ConnectorError);
    return error as ConnectorError;
  }
  throw new Error('expected a ConnectorError');
}
