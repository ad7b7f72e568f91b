/**
 * 401/403 on every /v1 route, the audit events they leave, and no token or key anywhere it
 * should not be: problem bodies, audit events, logs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import type { AuditEventWire, IssuedKeyWire } from '../../src/contract/index.js';
import { secureRandom } from '../../src/crypto/index.js';
import { MANAGEMENT_SCOPES } from '../../src/policy/index.js';
import { REDACT_PATHS, buildServer, createMetrics } from '../../src/server/index.js';
import { describeEachDialect } from '../support/databases.js';
import { HOUR, auditAfter, auditHead, createKey, expectProblem, idOf, unknownKey, useContext } from './helpers.js';

interface RouteCase {
  readonly method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  /** The route pattern, as the audit event names it. */
  readonly pattern: string;
  readonly scope: string;
  readonly body?: (key: IssuedKeyWire) => unknown;
  /** Whose id fills `:id`: a service key (the default) or a management token. */
  readonly target?: 'token';
}

const ROUTES: readonly RouteCase[] = [
  { method: 'POST', pattern: '/v1/keys', scope: 'keys:create', body: () => ({ owner: 'intruder' }) },
  { method: 'GET', pattern: '/v1/keys', scope: 'keys:read' },
  { method: 'GET', pattern: '/v1/keys/:id', scope: 'keys:read' },
  { method: 'POST', pattern: '/v1/keys/verify', scope: 'keys:verify', body: (key) => ({ key: key.key }) },
  { method: 'POST', pattern: '/v1/keys/:id/rotate', scope: 'keys:rotate', body: () => ({ overlap: '1h' }) },
  { method: 'POST', pattern: '/v1/keys/:id/revoke', scope: 'keys:revoke', body: () => ({ reason: 'x' }) },
  { method: 'POST', pattern: '/v1/keys/:id/disable', scope: 'keys:revoke', body: () => ({}) },
  { method: 'POST', pattern: '/v1/keys/:id/enable', scope: 'keys:revoke', body: () => ({}) },
  { method: 'POST', pattern: '/v1/keys/:id/retire', scope: 'keys:revoke', body: () => ({}) },
  { method: 'PATCH', pattern: '/v1/keys/:id', scope: 'keys:update', body: () => ({ purpose: 'hijacked' }) },
  { method: 'GET', pattern: '/v1/keys/:id/usage', scope: 'keys:read' },
  { method: 'POST', pattern: '/v1/tokens', scope: 'tokens:create', body: () => ({ scopes: ['keys:read'] }) },
  { method: 'GET', pattern: '/v1/tokens', scope: 'tokens:read' },
  { method: 'GET', pattern: '/v1/tokens/:id', scope: 'tokens:read', target: 'token' },
  { method: 'POST', pattern: '/v1/tokens/:id/rotate', scope: 'tokens:rotate', body: () => ({ overlap: '1h' }), target: 'token' },
  { method: 'POST', pattern: '/v1/tokens/:id/revoke', scope: 'tokens:revoke', body: () => ({ reason: 'x' }), target: 'token' },
  { method: 'GET', pattern: '/v1/audit', scope: 'audit:read' },
  { method: 'POST', pattern: '/v1/audit/verify', scope: 'audit:read' },
  { method: 'GET', pattern: '/v1/events', scope: 'events:read' },
  { method: 'GET', pattern: '/v1/rotation/policies', scope: 'rotation:read' },
  { method: 'GET', pattern: '/v1/rotation/policies/:name', scope: 'rotation:read' },
  { method: 'PUT', pattern: '/v1/rotation/policies/:name', scope: 'rotation:write', body: () => ({ policy: { name: 'intruder' } }) },
  { method: 'DELETE', pattern: '/v1/rotation/policies/:name', scope: 'rotation:write' },
  { method: 'POST', pattern: '/v1/incidents', scope: 'incidents:write', body: (key) => ({ action: 'revoke', select: `key=${key.id}`, reason: 'intrusion' }) },
  { method: 'GET', pattern: '/v1/incidents', scope: 'incidents:read' },
  { method: 'GET', pattern: '/v1/incidents/:id', scope: 'incidents:read' },
];

describeEachDialect('security of the /v1 routes', (dialect) => {
  const ctx = useContext(dialect);
  let target: IssuedKeyWire;
  /** A management token the token routes aim at; every call to them is refused. */
  let targetToken: IssuedKeyWire;
  let service: IssuedKeyWire;
  let revokedToken: string;
  let expiredToken: string;
  /** Every token and key presented or issued in this suite: none may leak. */
  const secrets = new Set<string>();
  /** Every problem body this suite received. */
  const problems: string[] = [];

  beforeAll(async () => {
    target = await createKey(ctx(), { owner: 'victim', scopes: ['orders:read'] });
    service = await createKey(ctx(), { owner: 'service', scopes: ['*', 'keys:create'] });
    const issued = await ctx().request({ method: 'POST', url: '/v1/tokens', body: { scopes: ['keys:read'], owner: 'victim-token' } });
    expect(issued.statusCode, issued.body).toBe(201);
    targetToken = issued.json() as IssuedKeyWire;
    revokedToken = await ctx().token(['*']);
    const revoke = await ctx().request({ method: 'POST', url: `/v1/tokens/${idOf(revokedToken)}/revoke`, body: { reason: 'test' } });
    expect(revoke.statusCode, revoke.body).toBe(200);
    const expiring = await ctx().request({ method: 'POST', url: '/v1/tokens', body: { scopes: ['*'], ttl: '1h' } });
    expiredToken = expiring.json().key;
    ctx().clock.advance(HOUR);
    for (const secret of [target.key, targetToken.key, service.key, revokedToken, expiredToken, ctx().rootToken]) secrets.add(secret);
  });

  const send = async (route: RouteCase, authorization: string | null): Promise<LightMyRequestResponse> => {
    const body = route.body?.(target);
    const res = await ctx().app.inject({
      method: route.method,
      url: route.pattern.replace(':id', route.target === 'token' ? targetToken.id : target.id),
      headers: {
        ...(authorization === null ? {} : { authorization }),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
    });
    if (res.statusCode >= 400) problems.push(res.body);
    return res;
  };

  /** Sends a refused call and returns the one audit event it left. */
  const refused = async (route: RouteCase, authorization: string | null, status: number, error: string): Promise<AuditEventWire> => {
    const head = await auditHead(ctx());
    const res = await send(route, authorization);
    const problem = expectProblem(res, status, error);
    const events = await auditAfter(ctx(), head);
    expect(events, `${route.method} ${route.pattern}`).toHaveLength(1);
    const event = events[0]!;
    expect(event.data).toMatchObject({ method: route.method, route: route.pattern });
    expect(event.requestId).toBe(problem.requestId);
    return event;
  };

  describe.each(ROUTES.map((route) => [`${route.method} ${route.pattern}`, route] as const))('%s', (_name, route) => {
    it('answers 401 without an Authorization header, writing auth.failed', async () => {
      const event = await refused(route, null, 401, 'ERR_UNAUTHENTICATED');
      expect(event).toMatchObject({ action: 'auth.failed', actor: 'anonymous', target: null, data: { reason: 'missing' } });
    });

    it('answers 401 to a malformed bearer or another scheme', async () => {
      for (const header of ['Bearer not-a-token', `Bearer ${target.key.slice(0, -1)}${target.key.endsWith('A') ? 'B' : 'A'}`, 'Basic dXNlcjpwYXNz', 'Bearer', `Token ${ctx().rootToken}`]) {
        const event = await refused(route, header, 401, 'ERR_UNAUTHENTICATED');
        expect(event.action).toBe('auth.failed');
      }
    });

    it('answers 401 to an unknown but well-formed token', async () => {
      const forged = unknownKey('ksm');
      secrets.add(forged);
      const event = await refused(route, `Bearer ${forged}`, 401, 'ERR_UNAUTHENTICATED');
      expect(event).toMatchObject({ action: 'auth.failed', data: { reason: 'not_found' } });
    });

    it('answers 401 to a revoked token', async () => {
      const event = await refused(route, `Bearer ${revokedToken}`, 401, 'ERR_UNAUTHENTICATED');
      expect(event).toMatchObject({ action: 'auth.failed', target: idOf(revokedToken), data: { reason: 'revoked' } });
    });

    it('answers 401 to an expired token', async () => {
      const event = await refused(route, `Bearer ${expiredToken}`, 401, 'ERR_UNAUTHENTICATED');
      expect(event).toMatchObject({ action: 'auth.failed', target: idOf(expiredToken), data: { reason: 'expired' } });
    });

    it(`answers 403 to a token without ${route.scope}, writing auth.denied`, async () => {
      const token = await ctx().token(MANAGEMENT_SCOPES.filter((scope) => scope !== route.scope));
      secrets.add(token);
      const event = await refused(route, `Bearer ${token}`, 403, 'ERR_FORBIDDEN');
      expect(event).toMatchObject({ action: 'auth.denied', actor: idOf(token), data: { requiredScope: route.scope } });
      expect(problems[problems.length - 1]).toContain(route.scope);
    });

    it('answers 403 to a service key used as the bearer', async () => {
      const event = await refused(route, `Bearer ${service.key}`, 403, 'ERR_FORBIDDEN');
      expect(event).toMatchObject({ action: 'auth.failed', target: service.id, data: { reason: 'service_key' } });
      expect(problems[problems.length - 1]).toMatch(/service key/i);
    });
  });

  describe('after every refused call', () => {
    it('left the target key untouched', async () => {
      const res = await ctx().request({ method: 'GET', url: `/v1/keys/${target.id}` });
      expect(res.json()).toMatchObject({ status: 'active', replacedBy: null, purpose: '', revokedAt: null, retiredAt: null });
      const owned = await ctx().request({ method: 'GET', url: '/v1/keys?owner=intruder' });
      expect(owned.json().data).toEqual([]);
    });

    it('left the target token untouched and still working', async () => {
      const res = await ctx().request({ method: 'GET', url: `/v1/tokens/${targetToken.id}` });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toMatchObject({ status: 'active', replacedBy: null, revokedAt: null, revokeReason: null });
      const successors = await ctx().store.db.selectFrom('api_keys').select('id').where('replaces', '=', targetToken.id).execute();
      expect(successors).toEqual([]);
      expect((await ctx().request({ method: 'GET', url: '/v1/keys?limit=1', token: targetToken.key })).statusCode).toBe(200);
    });

    it('never put a presented token or issued key in a problem body', () => {
      expect(problems.length).toBeGreaterThan(ROUTES.length * 5);
      for (const body of problems) for (const secret of secrets) expect(body).not.toContain(secret);
    });

    it('never put a presented token or issued key in an audit event', async () => {
      const text = JSON.stringify(await auditAfter(ctx(), 0));
      for (const secret of secrets) expect(text).not.toContain(secret);
      // Nor anything shaped like a key.
      expect(text).not.toMatch(/ksm?_(live|test)_[0-9A-Za-z]{22}_[0-9A-Za-z]{20,}/);
    });
  });

  describe('ordering of checks', () => {
    it('answers 401, not 400, to an unauthenticated call with an invalid body, and audits it', async () => {
      const head = await auditHead(ctx());
      const res = await ctx().request({ method: 'POST', url: '/v1/keys', token: null, body: { owner: 5, colour: 'red' } });
      expectProblem(res, 401, 'ERR_UNAUTHENTICATED');
      expect((await auditAfter(ctx(), head)).map((event) => event.action)).toEqual(['auth.failed']);
    });

    it('answers 401, not 400, to an unauthenticated call with a malformed id', async () => {
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/keys/not-an-id', token: null }), 401, 'ERR_UNAUTHENTICATED');
    });

    it('answers 403, not 404, to a caller without the scope asking about an unknown key', async () => {
      const token = await ctx().token(['keys:verify']);
      expectProblem(await ctx().request({ method: 'GET', url: `/v1/keys/key_${'A'.repeat(22)}`, token }), 403, 'ERR_FORBIDDEN');
    });
  });

  describe('the Authorization header', () => {
    it('accepts the bearer scheme in any letter case (RFC 9110 §11.1)', async () => {
      const res = await ctx().request({ method: 'GET', url: '/v1/keys?limit=1', token: null, headers: { authorization: `bearer ${ctx().rootToken}` } });
      expect(res.statusCode, res.body).toBe(200);
    });

    it('tolerates surrounding spaces around the token', async () => {
      const res = await ctx().request({ method: 'GET', url: '/v1/keys?limit=1', token: null, headers: { authorization: `Bearer   ${ctx().rootToken}  ` } });
      expect(res.statusCode).toBe(200);
    });

    it('refuses a token buried in a longer header', async () => {
      const res = await ctx().request({ method: 'GET', url: '/v1/keys?limit=1', token: null, headers: { authorization: `Bearer ${ctx().rootToken} extra` } });
      expectProblem(res, 401, 'ERR_UNAUTHENTICATED');
      expect(res.body).not.toContain(ctx().rootToken);
    });
  });

  describe('logs', () => {
    let logged: FastifyInstance;
    const lines: string[] = [];

    beforeAll(async () => {
      logged = await buildServer({
        audit: ctx().audit,
        keys: ctx().keys,
        incidents: ctx().incidents,
        secrets: ctx().secrets,
        kek: ctx().kek,
        rotationPolicies: ctx().rotationPolicies,
        rotation: ctx().rotation,
        store: ctx().store,
        clock: ctx().clock,
        random: secureRandom,
        metrics: createMetrics({ defaultMetrics: false }),
        logger: {
          level: 'trace',
          redact: { paths: REDACT_PATHS, censor: '[redacted]' },
          stream: { write: (line: string) => void lines.push(line) },
        },
      });
    });
    afterAll(async () => {
      await logged?.close();
    });

    it('never contain a presented token or issued key, whatever the outcome', async () => {
      const json = { 'content-type': 'application/json' };
      const auth = { authorization: `Bearer ${ctx().rootToken}` };
      const created = await logged.inject({ method: 'POST', url: '/v1/keys', headers: { ...auth, ...json }, payload: JSON.stringify({ owner: 'logged' }) });
      expect(created.statusCode).toBe(201);
      const key = created.json().key as string;
      secrets.add(key);
      const minted = await logged.inject({ method: 'POST', url: '/v1/tokens', headers: { ...auth, ...json }, payload: JSON.stringify({ scopes: ['keys:read'] }) });
      expect(minted.statusCode).toBe(201);
      const token = minted.json().key as string;
      secrets.add(token);
      const calls = [
        { method: 'POST', url: '/v1/keys/verify', headers: { ...auth, ...json }, payload: JSON.stringify({ key }) },
        { method: 'POST', url: '/v1/keys/verify', headers: { ...auth, ...json }, payload: JSON.stringify({ key: `${key}x` }) },
        { method: 'POST', url: '/v1/keys/verify', headers: { ...auth, ...json }, payload: `{"key":"${key}"` },
        { method: 'POST', url: '/v1/keys/verify', headers: { ...auth, ...json }, payload: JSON.stringify({ key, extra: key }) },
        { method: 'GET', url: '/v1/keys', headers: { authorization: `Bearer ${service.key}` } },
        { method: 'GET', url: '/v1/keys', headers: { authorization: `Bearer ${revokedToken}` } },
        { method: 'GET', url: `/v1/keys/${key}`, headers: auth },
        { method: 'GET', url: `/v1/nowhere/${key}`, headers: auth },
        { method: 'POST', url: `/v1/keys/${created.json().id}/rotate`, headers: { ...auth, ...json }, payload: '{}' },
        { method: 'GET', url: '/v1/tokens', headers: { authorization: `Bearer ${token}` } },
        { method: 'GET', url: `/v1/tokens/${token}`, headers: auth },
        { method: 'POST', url: `/v1/tokens/${minted.json().id}/rotate`, headers: { ...auth, ...json }, payload: '{}' },
        { method: 'POST', url: `/v1/tokens/${minted.json().id}/revoke`, headers: { ...auth, ...json }, payload: JSON.stringify({ reason: 'done' }) },
      ] as const;
      for (const call of calls) {
        const res = await logged.inject(call);
        expect(res.statusCode).toBeLessThan(500);
        if (res.statusCode >= 400) {
          for (const secret of secrets) expect(res.body).not.toContain(secret);
        }
        const rotated = res.json() as { key?: string };
        if (typeof rotated.key === 'string') secrets.add(rotated.key);
      }
      const text = lines.join('');
      for (const secret of secrets) expect(text).not.toContain(secret);
    });
  });

  // Last: when the bug they show is present, the root token ends up rotated.
  describe('management tokens as targets of the key routes', () => {
    it('does not let a keys:rotate token rotate the root token into a new * token', async () => {
      const narrow = await ctx().token(['keys:rotate', 'keys:read']);
      secrets.add(narrow);
      const head = await auditHead(ctx());
      const res = await ctx().request({ method: 'POST', url: `/v1/keys/${ctx().rootTokenId}/rotate`, token: narrow, body: { overlap: '1h' } });
      const issued = res.statusCode === 201 ? (res.json() as IssuedKeyWire) : undefined;
      if (issued) secrets.add(issued.key);
      expect(issued?.scopes, 'a keys:rotate token obtained a token with these scopes').toBeUndefined();
      expectProblem(res, 404, 'ERR_KEY_NOT_FOUND', 'not_found');
      expect((await auditAfter(ctx(), head)).filter((event) => event.action.startsWith('token.'))).toEqual([]);
    });

    it('does not let a narrow token revoke, disable or re-scope a token holding scopes it lacks', async () => {
      const admin = await ctx().token(['*']);
      secrets.add(admin);
      const narrow = await ctx().token(['keys:revoke', 'keys:update']);
      secrets.add(narrow);
      const allowed: string[] = [];
      for (const [method, path, body] of [
        ['POST', 'disable', {}],
        ['PATCH', '', { ipAllowlist: ['192.0.2.1'] }],
        ['POST', 'revoke', { reason: 'coup' }],
      ] as const) {
        const res = await ctx().request({ method, url: `/v1/keys/${idOf(admin)}${path ? `/${path}` : ''}`, token: narrow, body });
        if (res.statusCode !== 404) allowed.push(`${method} ${path || 'PATCH'} -> ${res.statusCode}`);
        else expectProblem(res, 404, 'ERR_KEY_NOT_FOUND');
      }
      expect(allowed).toEqual([]);
      expect((await ctx().request({ method: 'GET', url: '/v1/keys?limit=1', token: admin })).statusCode).toBe(200);
      expect((await ctx().request({ method: 'GET', url: `/v1/tokens/${idOf(admin)}` })).json()).toMatchObject({ status: 'active', ipAllowlist: null });
    });
  });
});
