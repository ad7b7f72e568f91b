/**
 * 401/403 on every /v1 route, the audit events they leave, and no token or key anywhere it
 * should not be: problem bodies, audit events, logs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import type { AuditEventWire, IssuedKeyWire } from '../../src/contract/index.js';
import { secureRandom } from '../../src/crypto/index.js';
import { MANAGEMENT_SCOPES } from '../../src/policy/index.js';
import { REDACT_PATHS, buildServer, createMetrics, type RouteScope, type ScopeRequirement } from '../../src/server/index.js';
import { describeEachDialect } from '../support/databases.js';
import { serverServices } from '../support/context.js';
import { HOUR, auditAfter, auditHead, createKey, expectProblem, idOf, unknownKey, useContext } from './helpers.js';

/**
 * The routes under test are the ones the app registers (app.routeScopes, read from each route's
 * guard as Fastify registers it), not a list kept by hand: a new /v1 route is in the matrix the
 * moment it exists, and one without a guard fails it.
 */
interface RouteCase {
  readonly method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  /** The route pattern, as the audit event names it. */
  readonly pattern: string;
  /** The URL called: parameters filled in. */
  readonly url: string;
  readonly requirement: ScopeRequirement | undefined;
  /** The scope the token lacks in the missing-scope case, and what the refusal names. */
  readonly family: string;
  readonly required: string;
  /** The action-word catch-all: it refuses every authenticated call with a 404, so it has no missing-scope case. */
  readonly hidden: boolean;
}

const SECRET_PATH = 'matrix/secret';

function routeCase(route: RouteScope, ids: { key: string; token: string }): RouteCase {
  const url = route.url
    .replace(':id', route.url.startsWith('/v1/tokens/') ? ids.token : ids.key)
    .replace(':name', 'matrix-policy')
    .replace(':version', '1')
    .replace(/^\/v1\/secret-actions\/\*$/, `/v1/secret-actions/nothing/${SECRET_PATH}`)
    .replace(/\*$/, SECRET_PATH);
  const requirement = route.requirement;
  const family = requirement === undefined ? '' : typeof requirement === 'string' ? requirement : 'anyOf' in requirement ? requirement.anyOf : requirement.family;
  const required = requirement === undefined ? '' : typeof requirement === 'string' ? requirement : 'anyOf' in requirement ? `${requirement.anyOf}[:…]` : `${requirement.family}:${SECRET_PATH}`;
  return { method: route.method as RouteCase['method'], pattern: route.url, url, requirement, family, required, hidden: route.hidden };
}

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

  let routes: RouteCase[] = [];
  beforeAll(() => {
    routes = ctx()
      .app.routeScopes.filter((route) => route.url.startsWith('/v1'))
      .map((route) => routeCase(route, { key: target.id, token: targetToken.id }));
  });

  const send = async (route: RouteCase, authorization: string | null): Promise<LightMyRequestResponse> => {
    const res = await ctx().app.inject({ method: route.method, url: route.url, headers: authorization === null ? {} : { authorization } });
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
    expect(event.data, `${route.method} ${route.pattern}`).toMatchObject({ method: route.method, route: route.pattern });
    expect(event.requestId).toBe(problem.requestId);
    return event;
  };

  /** Runs `check` on every route, naming each failure's route. */
  const everyRoute = async (check: (route: RouteCase) => Promise<void>, which: (route: RouteCase) => boolean = () => true): Promise<void> => {
    for (const route of routes.filter(which)) {
      try {
        await check(route);
      } catch (error) {
        throw new Error(`${route.method} ${route.pattern}: ${(error as Error).message}`);
      }
    }
  };

  describe('every /v1 route the app registers', () => {
    it('is in the matrix: more than the 26 routes once listed by hand, KEK, secrets, secret actions, runs and stats included', () => {
      const patterns = routes.map((route) => `${route.method} ${route.pattern}`);
      expect(patterns.length).toBeGreaterThan(45);
      for (const pattern of [
        'GET /v1/kek',
        'POST /v1/kek/rotate',
        'POST /v1/kek/versions/:version/retire',
        'PUT /v1/secrets/*',
        'GET /v1/secrets',
        'POST /v1/secret-actions/destroy/*',
        'POST /v1/rotations',
        'GET /v1/rotations/:id',
        'POST /v1/rotations/:id/rollback',
        'GET /v1/rotation/stats',
      ]) {
        expect(patterns).toContain(pattern);
      }
    });

    it('has a guard: a route without one fails here', () => {
      expect(routes.filter((route) => route.requirement === undefined).map((route) => `${route.method} ${route.pattern}`)).toEqual([]);
    });

    it('answers 401 without an Authorization header, writing auth.failed', async () => {
      await everyRoute(async (route) => {
        const event = await refused(route, null, 401, 'ERR_UNAUTHENTICATED');
        expect(event).toMatchObject({ action: 'auth.failed', actor: 'anonymous', target: null, data: { reason: 'missing' } });
      });
    });

    it('answers 401 to a malformed bearer or another scheme', async () => {
      const headers = ['Bearer not-a-token', `Bearer ${target.key.slice(0, -1)}${target.key.endsWith('A') ? 'B' : 'A'}`, 'Basic dXNlcjpwYXNz', 'Bearer', `Token ${ctx().rootToken}`];
      await everyRoute(async (route) => {
        for (const header of headers) {
          const event = await refused(route, header, 401, 'ERR_UNAUTHENTICATED');
          expect(event.action).toBe('auth.failed');
        }
      });
    });

    it('answers 401 to an unknown but well-formed token', async () => {
      const forged = unknownKey('ksm');
      secrets.add(forged);
      await everyRoute(async (route) => {
        const event = await refused(route, `Bearer ${forged}`, 401, 'ERR_UNAUTHENTICATED');
        expect(event).toMatchObject({ action: 'auth.failed', data: { reason: 'not_found' } });
      });
    });

    it('answers 401 to a revoked token', async () => {
      await everyRoute(async (route) => {
        const event = await refused(route, `Bearer ${revokedToken}`, 401, 'ERR_UNAUTHENTICATED');
        expect(event).toMatchObject({ action: 'auth.failed', target: idOf(revokedToken), data: { reason: 'revoked' } });
      });
    });

    it('answers 401 to an expired token', async () => {
      await everyRoute(async (route) => {
        const event = await refused(route, `Bearer ${expiredToken}`, 401, 'ERR_UNAUTHENTICATED');
        expect(event).toMatchObject({ action: 'auth.failed', target: idOf(expiredToken), data: { reason: 'expired' } });
      });
    });

    it('answers 403 to a token without the route\'s scope, writing auth.denied that names it', async () => {
      const lacking = new Map<string, string>();
      await everyRoute(
        async (route) => {
          let token = lacking.get(route.family);
          if (token === undefined) {
            token = await ctx().token(MANAGEMENT_SCOPES.filter((scope) => scope !== route.family));
            secrets.add(token);
            lacking.set(route.family, token);
          }
          const event = await refused(route, `Bearer ${token}`, 403, 'ERR_FORBIDDEN');
          expect(event).toMatchObject({ action: 'auth.denied', actor: idOf(token), data: { requiredScope: route.required } });
          expect(problems[problems.length - 1]).toContain(route.required);
        },
        (route) => !route.hidden,
      );
    });

    it('answers 403 to a service key used as the bearer', async () => {
      await everyRoute(async (route) => {
        const event = await refused(route, `Bearer ${service.key}`, 403, 'ERR_FORBIDDEN');
        expect(event).toMatchObject({ action: 'auth.failed', target: service.id, data: { reason: 'service_key' } });
        expect(problems[problems.length - 1]).toMatch(/service key/i);
      });
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
      expect(problems.length).toBeGreaterThan(routes.length * 5);
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
        ...serverServices(ctx()),
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
