/**
 * A flood of bad tokens (issue 9, section 4): 1,000 unauthenticated requests used to write 1,000
 * `auth.failed` rows. Failures are now aggregated per address and reason per window, the counts
 * add up, an address is throttled (429 + Retry-After, before its token is looked at) after the
 * limit, other addresses are not, and /metrics counts every failure. A token lacking a scope
 * used to write one `auth.denied` row per call: those are aggregated per (principal, scope,
 * route) per window too, but still answered 403, never throttled.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { AuditEventWire } from '../../src/contract/index.js';
import { describeEachDialect } from '../support/databases.js';
import { createTestContext, type TestContext } from '../support/context.js';
import { auditAfter, auditHead, expectProblem, unknownKey, useContext } from '../http/helpers.js';

const ATTACKER = '203.0.113.9';
const NEIGHBOUR = '203.0.113.10';
const LIMIT = 20;

function failedFrom(events: readonly AuditEventWire[], ip: string): AuditEventWire[] {
  return events.filter((event) => event.action === 'auth.failed' && event.sourceIp === ip);
}

const countOf = (events: readonly AuditEventWire[]) => events.reduce((sum, event) => sum + Number((event.data as { count: number }).count), 0);

function deniedIn(events: readonly AuditEventWire[]): Array<AuditEventWire & { data: { requiredScope: string; route: string; count: number; window?: unknown } }> {
  return events.filter((event) => event.action === 'auth.denied') as never;
}

function denialsMetric(text: string): number {
  const line = text.split('\n').find((l) => l.startsWith('keysmith_auth_denials_total '));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

function metric(text: string, reason: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`keysmith_auth_failures_total{reason="${reason}"}`));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

describeEachDialect('failed authentication is aggregated and throttled', (dialect) => {
  const ctx = useContext(dialect, { authFailures: { windowMs: 60_000, limit: LIMIT, maxAddresses: 1_000 } });
  const call = (remoteAddress: string, token?: string, url = '/v1/keys?limit=1') =>
    ctx().app.inject({ method: 'GET', url, remoteAddress, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });

  it('turns 1,000 bad requests into a handful of audit rows whose counts add up', async () => {
    const head = await auditHead(ctx());
    const stranger = unknownKey('ksm');
    const statuses = new Map<number, number>();
    for (let i = 0; i < 1_000; i++) {
      const res = await call(ATTACKER, i % 2 === 0 ? undefined : stranger);
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
      if (i === LIMIT) {
        const problem = expectProblem(res, 429, 'ERR_RATE_LIMITED', 'rate_limited');
        expect(problem.detail).toMatch(/try again in 60 s/);
        expect(res.headers['retry-after']).toBe('60');
      }
    }
    expect(Object.fromEntries(statuses)).toEqual({ 401: LIMIT, 429: 1_000 - LIMIT });

    let events = failedFrom(await auditAfter(ctx(), head), ATTACKER);
    // One row per reason seen in the window: missing, not_found, throttled.
    expect(events.map((event) => [(event.data as { reason: string }).reason, (event.data as { count: number }).count])).toEqual([
      ['missing', 1],
      ['not_found', 1],
      ['throttled', 1],
    ]);
    expect(JSON.stringify(events)).not.toContain(stranger);

    // A neighbour is not throttled, and a valid token from the throttled address is refused too
    // (documented: once throttled, every call from the address waits for the window to end).
    expectProblem(await call(NEIGHBOUR), 401, 'ERR_UNAUTHENTICATED');
    expect((await call(NEIGHBOUR, ctx().rootToken)).statusCode).toBe(200);
    const refused = await call(ATTACKER, ctx().rootToken);
    expectProblem(refused, 429, 'ERR_RATE_LIMITED');
    expect(refused.headers['retry-after']).toBe('60');
    ctx().clock.advance(30_000);
    expect((await call(ATTACKER, ctx().rootToken)).headers['retry-after']).toBe('30');

    // The metrics count every failure, the audit log none of them twice.
    const metrics = (await ctx().app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metric(metrics, 'missing')).toBe(LIMIT / 2 + 1);
    expect(metric(metrics, 'not_found')).toBe(LIMIT / 2);
    expect(metric(metrics, 'throttled')).toBe(1_000 - LIMIT + 2);

    // When the window has passed, the address may call again; its next failure writes the
    // counts held for the old window, and every failure is accounted for.
    ctx().clock.advance(30_000);
    expect((await call(ATTACKER, ctx().rootToken)).statusCode).toBe(200);
    expectProblem(await call(ATTACKER), 401, 'ERR_UNAUTHENTICATED');
    events = failedFrom(await auditAfter(ctx(), head), ATTACKER);
    expect(events.length).toBeLessThanOrEqual(7);
    expect(countOf(events)).toBe(1_000 + 2 + 1);
    const flushed = events.find((event) => (event.data as { reason: string; window?: unknown }).reason === 'throttled' && (event.data as { window?: unknown }).window !== undefined);
    expect(flushed?.data).toMatchObject({ count: 1_000 - LIMIT + 2 - 1, window: { from: expect.any(String), to: expect.any(String) } });
  });

  it('aggregates the auth.denied events of a token that lacks the scope, answering 403 every time', async () => {
    const weak = await ctx().token([]);
    const head = await auditHead(ctx());
    const before = denialsMetric((await ctx().app.inject({ method: 'GET', url: '/metrics' })).body);
    const statuses = new Map<number, number>();
    for (let i = 0; i < 1_000; i++) {
      const res = await call('198.51.100.7', weak);
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
    }
    // Never throttled: a client missing a scope keeps being told so.
    expect(Object.fromEntries(statuses)).toEqual({ 403: 1_000 });
    expectProblem(await call('198.51.100.7', weak), 403, 'ERR_FORBIDDEN');
    // Another scope and route gets its own event.
    expectProblem(await call('198.51.100.7', weak, '/v1/audit?limit=1'), 403, 'ERR_FORBIDDEN');

    let events = deniedIn(await auditAfter(ctx(), head));
    expect(events.map((event) => [event.data.requiredScope, event.data.route, event.data.count])).toEqual([
      ['keys:read', '/v1/keys', 1],
      ['audit:read', '/v1/audit', 1],
    ]);
    const actor = events[0]!.actor;
    expect(actor).not.toBe('anonymous');
    expect(events.every((event) => event.actor === actor && event.sourceIp === '198.51.100.7')).toBe(true);

    // The window closes: the next denial writes the counts held, and every denial is accounted for.
    ctx().clock.advance(60_000);
    expectProblem(await call('198.51.100.7', weak), 403, 'ERR_FORBIDDEN');
    events = deniedIn(await auditAfter(ctx(), head));
    expect(events.length).toBeLessThanOrEqual(4);
    expect(countOf(events)).toBe(1_000 + 1 + 1 + 1);
    expect(events.find((event) => event.data.window !== undefined)?.data).toMatchObject({ count: 1_000, requiredScope: 'keys:read', window: { from: expect.any(String), to: expect.any(String) } });

    // /metrics counts every denial, with no label per scope or principal.
    const metrics = (await ctx().app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(denialsMetric(metrics) - before).toBe(1_003);
    expect(metrics).not.toContain('keysmith_auth_denials_total{');
    // A secret's scope names its path, but a new path is not a new denial: counted by the route's requirement.
    const reads = await auditHead(ctx());
    for (let i = 0; i < 50; i++) expectProblem(await call('198.51.100.7', weak, `/v1/secrets/app/s${i}`), 403, 'ERR_FORBIDDEN');
    const paths = deniedIn(await auditAfter(ctx(), reads));
    expect(paths.map((event) => [event.data.requiredScope, event.data.count])).toEqual([['secrets:read:app/s0', 1]]);

    // The denials did not throttle the address or the token's other calls.
    expect((await call('198.51.100.7', ctx().rootToken)).statusCode).toBe(200);
  });
});

describeEachDialect('failed authentication counts at shutdown', (dialect) => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext(dialect, { authFailures: { limit: 0 } });
  });
  afterAll(async () => {
    await ctx.close();
  });

  it('writes the counts still held when the server stops', async () => {
    const head = await auditHead(ctx);
    for (let i = 0; i < 12; i++) await ctx.app.inject({ method: 'GET', url: '/v1/keys', remoteAddress: ATTACKER });
    expect(failedFrom(await auditAfter(ctx, head), ATTACKER).map((event) => (event.data as { count: number }).count)).toEqual([1]);
    await ctx.app.close();
    const rows = await ctx.store.db.selectFrom('audit_events').select(['action', 'source_ip', 'data']).where('seq', '>', head).execute();
    const counts = rows.filter((row) => row.action === 'auth.failed').map((row) => (JSON.parse(String(row.data)) as { count: number }).count);
    expect(counts).toEqual([1, 11]);
  });
});

describeEachDialect('refused scopes counts at shutdown', (dialect) => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext(dialect, { authFailures: {} });
  });
  afterAll(async () => {
    await ctx.close();
  });

  it('writes the denial counts still held when the server stops', async () => {
    const weak = await ctx.token(['audit:read']);
    const head = await auditHead(ctx);
    for (let i = 0; i < 12; i++) expectProblem(await ctx.request({ method: 'GET', url: '/v1/keys', token: weak }), 403, 'ERR_FORBIDDEN');
    expect(deniedIn(await auditAfter(ctx, head)).map((event) => event.data.count)).toEqual([1]);
    await ctx.app.close();
    const rows = await ctx.store.db.selectFrom('audit_events').select(['action', 'data']).where('seq', '>', head).execute();
    const counts = rows.filter((row) => row.action === 'auth.denied').map((row) => (JSON.parse(String(row.data)) as { count: number }).count);
    expect(counts).toEqual([1, 11]);
  });
});

describeEachDialect('without aggregation (authFailures: false)', (dialect) => {
  const ctx = useContext(dialect);

  it('writes one auth.denied event per refused call', async () => {
    const weak = await ctx().token(['audit:read']);
    const head = await auditHead(ctx());
    for (let i = 0; i < 30; i++) expectProblem(await ctx().request({ method: 'GET', url: '/v1/keys', token: weak }), 403, 'ERR_FORBIDDEN');
    const events = deniedIn(await auditAfter(ctx(), head));
    expect(events).toHaveLength(30);
    expect(events.every((event) => event.data.count === undefined)).toBe(true);
  });
});
