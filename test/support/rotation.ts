/**
 * Helpers for rotation-run tests: a programmable health endpoint, the fake vendor's http
 * connector settings, and `drive`, which ticks an engine (advancing the manual clock over waits
 * when asked) until a run ends.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RunDetail } from '../../src/rotation/index.js';
import type { TestContext } from './context.js';
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
