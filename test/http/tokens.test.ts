import { describe, expect, it } from 'vitest';
import { describeEachDialect } from '../support/databases.js';
import type { KeyPageWire, KeyRecordWire } from '../../src/contract/index.js';
import {
  DAY,
  HOUR,
  allPropertyNames,
  auditAfter,
  auditHead,
  countRows,
  createKey,
  expectNothingWritten,
  expectProblem,
  getKey,
  getToken,
  idOf,
  iso,
  problemFields,
  revokeToken,
  unique,
  unknownKeyId,
  useContext,
  verifyKey,
} from './helpers.js';

describeEachDialect('POST /v1/tokens', (dialect) => {
  const ctx = useContext(dialect);

  const createToken = (body: Record<string, unknown>, token?: string) =>
    ctx().request({ method: 'POST', url: '/v1/tokens', body, ...(token ? { token } : {}) });

  describe('happy path', () => {
    it('issues a management token that can verify keys but not create them', async () => {
      const res = await createToken({ scopes: ['keys:verify'], owner: 'api-gateway', purpose: 'edge verification' });
      expect(res.statusCode).toBe(201);
      expect(res.headers['cache-control']).toBe('no-store');
      const token = res.json();
      expect(token.key).toMatch(/^ksm_live_[0-9A-Za-z]{22}_[0-9A-Za-z]{49}$/);
      expect(token).toMatchObject({
        kind: 'management',
        scopes: ['keys:verify'],
        owner: 'api-gateway',
        purpose: 'edge verification',
        status: 'active',
        createdBy: ctx().rootTokenId,
        expiresAt: iso(ctx().clock.now() + 30 * 86_400_000),
      });
      const service = await createKey(ctx());
      const verify = await ctx().request({ method: 'POST', url: '/v1/keys/verify', token: token.key, body: { key: service.key } });
      expect(verify.statusCode).toBe(200);
      expect(verify.json().code).toBe('VALID');
      const create = await ctx().request({ method: 'POST', url: '/v1/keys', token: token.key, body: { owner: 'x' } });
      const problem = expectProblem(create, 403, 'ERR_FORBIDDEN', 'forbidden');
      expect(problem.detail).toContain('keys:create');
    });

    it('names the caller as owner when none is given, and takes a ttl', async () => {
      const res = await createToken({ scopes: ['keys:read'], ttl: '1h' });
      expect(res.statusCode).toBe(201);
      expect(res.json()).toMatchObject({ owner: ctx().rootTokenId, expiresAt: iso(ctx().clock.now() + HOUR) });
    });

    it('lets a token grant a subset of its own scopes, including through a wildcard', async () => {
      const parent = await ctx().token(['tokens:create', 'keys:*']);
      const child = await createToken({ scopes: ['keys:read', 'keys:verify'] }, parent);
      expect(child.statusCode).toBe(201);
      expect(child.json().createdBy).toBe(idOf(parent));
      const wildcard = await createToken({ scopes: ['keys:*'] }, parent);
      expect(wildcard.statusCode).toBe(201);
    });

    it('does not list tokens among service keys, nor show them on the key routes', async () => {
      const res = await createToken({ scopes: ['audit:read'], owner: 'auditor-token' });
      const list = await ctx().request({ method: 'GET', url: '/v1/keys?owner=auditor-token' });
      expect(list.json().data).toEqual([]);
      expectProblem(await ctx().request({ method: 'GET', url: `/v1/keys/${res.json().id}` }), 404, 'ERR_KEY_NOT_FOUND', 'not_found');
      expect((await getToken(ctx(), res.json().id)).kind).toBe('management');
    });

    it('records a token.issued event without the token', async () => {
      const head = await auditHead(ctx());
      const res = await createToken({ scopes: ['keys:verify'] });
      const events = await auditAfter(ctx(), head);
      expect(events.map((event) => [event.action, event.actor, event.target, event.requestId])).toEqual([
        ['token.issued', ctx().rootTokenId, res.json().id, res.headers['x-request-id']],
      ]);
      expect(JSON.stringify(events)).not.toContain(res.json().key);
    });
  });

  describe('errors', () => {
    it('refuses to grant scopes the caller lacks with 403 ERR_SCOPE_ESCALATION', async () => {
      const parent = await ctx().token(['tokens:create', 'keys:verify']);
      for (const scopes of [['keys:create'], ['keys:verify', 'audit:read'], ['*'], ['keys:*'], ['tokens:*']]) {
        const res = await createToken({ scopes }, parent);
        const problem = expectProblem(res, 403, 'ERR_SCOPE_ESCALATION', 'forbidden');
        expect(problem.detail).not.toContain(parent);
      }
    });

    it.each([[['orders:read']], [['keys:delete']], [['keys:read:*']], [['k*']], [[':*']]])('refuses the unknown management scope %j with 400', async (scopes) => {
      const problem = expectProblem(await createToken({ scopes }), 400, 'ERR_INVALID_REQUEST', 'invalid_request');
      expect(problemFields(problem)).toContain('scopes');
    });

    it('refuses an empty scope list, a missing one, and bad types', async () => {
      for (const body of [{ scopes: [] }, {}, { scopes: 'keys:read' }, { scopes: ['keys:read'], owner: 5 }]) {
        expectProblem(await createToken(body), 400, 'ERR_INVALID_REQUEST');
      }
    });

    it('refuses a ttl past the maximum with 422 and a bad ttl with 400', async () => {
      expectProblem(await createToken({ scopes: ['keys:read'], ttl: '91d' }), 422, 'ERR_TTL_TOO_LONG', 'policy_violation');
      expect(expectProblem(await createToken({ scopes: ['keys:read'], ttl: '-1d' }), 400).detail).toContain('ttl');
    });

    it('refuses unknown fields such as env or rateLimit', async () => {
      expect(expectProblem(await createToken({ scopes: ['keys:read'], env: 'test' }), 400).detail).toContain('env');
      expect(expectProblem(await createToken({ scopes: ['keys:read'], rateLimit: { limit: 1, window: '1m' } }), 400).detail).toContain('rateLimit');
    });
  });

  describe('authentication with tokens', () => {
    it('refuses a service key used as a bearer with 403 saying service keys cannot call the management API', async () => {
      const service = await createKey(ctx(), { scopes: ['*'] });
      const head = await auditHead(ctx());
      const res = await ctx().request({ method: 'GET', url: '/v1/keys', token: service.key });
      const problem = expectProblem(res, 403, 'ERR_FORBIDDEN', 'forbidden');
      expect(problem.detail).toMatch(/service key/i);
      expect(problem.detail).toMatch(/management API/);
      expect(res.body).not.toContain(service.key);
      const events = await auditAfter(ctx(), head);
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ action: 'auth.failed', target: service.id, data: { reason: 'service_key' } });
    });

    it('refuses an expired token with 401', async () => {
      const res = await createToken({ scopes: ['keys:read'], ttl: '1h' });
      const token = res.json().key as string;
      expect((await ctx().request({ method: 'GET', url: '/v1/keys?limit=1', token })).statusCode).toBe(200);
      ctx().clock.advance(HOUR);
      const expired = await ctx().request({ method: 'GET', url: '/v1/keys?limit=1', token });
      expect(expectProblem(expired, 401, 'ERR_UNAUTHENTICATED', 'unauthenticated').detail).toContain('expired');
    });

    it('refuses a revoked token with 401 on its very next call', async () => {
      const token = await ctx().token(['keys:read']);
      expect((await ctx().request({ method: 'GET', url: '/v1/keys?limit=1', token })).statusCode).toBe(200);
      await revokeToken(ctx(), idOf(token), { reason: 'left the team' });
      expect(expectProblem(await ctx().request({ method: 'GET', url: '/v1/keys?limit=1', token }), 401, 'ERR_UNAUTHENTICATED').detail).toContain('revoked');
    });

    it("refuses a token used from outside its allowlist", async () => {
      const res = await createToken({ scopes: ['keys:read'], ipAllowlist: ['10.0.0.0/8'] });
      const token = res.json().key as string;
      const inside = await ctx().app.inject({ method: 'GET', url: '/v1/keys?limit=1', remoteAddress: '10.1.2.3', headers: { authorization: `Bearer ${token}` } });
      expect(inside.statusCode).toBe(200);
      const outside = await ctx().app.inject({ method: 'GET', url: '/v1/keys?limit=1', remoteAddress: '192.0.2.1', headers: { authorization: `Bearer ${token}` } });
      expectProblem(outside, 401, 'ERR_UNAUTHENTICATED');
    });

    it('refuses a token whose checksum is wrong, or with a wrong secret, with 401', async () => {
      const token = await ctx().token(['keys:read']);
      const flipped = token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A');
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/keys', token: flipped }), 401, 'ERR_UNAUTHENTICATED');
      const prefix = token.slice(0, token.lastIndexOf('_') + 1);
      const forged = `${prefix}${'A'.repeat(49)}`;
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/keys', token: forged }), 401, 'ERR_UNAUTHENTICATED');
    });
  });

  describe('security', () => {
    it('answers 401 without a token and 403 without tokens:create', async () => {
      const anonymous = await ctx().request({ method: 'POST', url: '/v1/tokens', token: null, body: { scopes: ['keys:read'] } });
      expectProblem(anonymous, 401, 'ERR_UNAUTHENTICATED', 'unauthenticated');
      const token = await ctx().token(['keys:read', 'keys:create']);
      const res = await createToken({ scopes: ['keys:read'] }, token);
      expect(expectProblem(res, 403, 'ERR_FORBIDDEN', 'forbidden').detail).toContain('tokens:create');
    });
  });
});

describeEachDialect('management token routes', (dialect) => {
  const ctx = useContext(dialect);

  /** Issues a token through the API (root token unless given) and returns it with its record. */
  const issue = async (body: Record<string, unknown>, token?: string) => {
    const res = await ctx().request({ method: 'POST', url: '/v1/tokens', body, ...(token ? { token } : {}) });
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as KeyRecordWire & { key: string };
  };
  const list = (query: string, token?: string) => ctx().request({ method: 'GET', url: `/v1/tokens?${query}`, ...(token ? { token } : {}) });
  const rotate = (id: string, body: Record<string, unknown> = { overlap: '1h' }, token?: string) =>
    ctx().request({ method: 'POST', url: `/v1/tokens/${id}/rotate`, body, ...(token ? { token } : {}) });
  const revoke = (id: string, body?: Record<string, unknown>, token?: string) =>
    ctx().request({ method: 'POST', url: `/v1/tokens/${id}/revoke`, ...(body !== undefined ? { body } : {}), ...(token ? { token } : {}) });
  /** Whether a token may call the API right now (a tokens:read-free call any token here can make). */
  const call = (token: string) => ctx().request({ method: 'GET', url: '/v1/keys?limit=1', token });

  describe('GET /v1/tokens', () => {
    it('lists management tokens newest first, root included, never a service key, a key or a hash', async () => {
      const service = await createKey(ctx(), { owner: unique('svc') });
      ctx().clock.advance(1000);
      const a = await issue({ scopes: ['keys:read'], owner: unique() });
      ctx().clock.advance(1000);
      const b = await issue({ scopes: ['keys:verify'], owner: unique() });
      const res = await list('limit=200');
      expect(res.statusCode, res.body).toBe(200);
      const page = res.json() as KeyPageWire;
      expect(page.nextCursor).toBeNull();
      const ids = page.data.map((token) => token.id);
      expect(ids.slice(0, 2)).toEqual([b.id, a.id]);
      expect(ids).toContain(ctx().rootTokenId);
      expect(ids).not.toContain(service.id);
      expect(page.data.every((token) => token.kind === 'management')).toBe(true);
      expect(page.data.find((token) => token.id === a.id)).toMatchObject({ scopes: ['keys:read'], owner: a.owner, status: 'active' });
      expect(allPropertyNames(page).filter((name) => /hash|secret|^key$/i.test(name))).toEqual([]);
      for (const secret of [a.key, b.key, service.key, ctx().rootToken]) expect(res.body).not.toContain(secret);
    });

    it('pages through every token exactly once with the cursor', async () => {
      for (let i = 0; i < 3; i += 1) await issue({ scopes: ['keys:read'] });
      const everything = ((await list('limit=200')).json() as KeyPageWire).data.map((token) => token.id);
      const paged: string[] = [];
      let cursor: string | null = null;
      do {
        const res = await list(`limit=2${cursor ? `&cursor=${cursor}` : ''}`);
        expect(res.statusCode, res.body).toBe(200);
        const page = res.json() as KeyPageWire;
        expect(page.data.length).toBeLessThanOrEqual(2);
        paged.push(...page.data.map((token) => token.id));
        cursor = page.nextCursor;
      } while (cursor !== null);
      expect(paged).toEqual(everything);
      expect(new Set(paged).size).toBe(paged.length);
    });

    it('refuses a cursor it did not issue and a limit out of range with 400 naming the parameter', async () => {
      expect(problemFields(expectProblem(await list('cursor=not-a-cursor'), 400, 'ERR_INVALID_REQUEST'))).toContain('cursor');
      for (const query of ['limit=0', 'limit=201', 'limit=abc']) {
        expect(expectProblem(await list(query), 400, 'ERR_INVALID_REQUEST', 'invalid_request').detail).toContain('limit');
      }
    });

    it('answers 401 without a token and 403 to a token without tokens:read, even one holding keys:read', async () => {
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/tokens', token: null }), 401, 'ERR_UNAUTHENTICATED');
      const token = await ctx().token(['keys:read', 'tokens:create', 'tokens:rotate', 'tokens:revoke']);
      expect(expectProblem(await list('', token), 403, 'ERR_FORBIDDEN', 'forbidden').detail).toContain('tokens:read');
      const reader = await ctx().token(['tokens:read']);
      expect((await list('limit=1', reader)).statusCode).toBe(200);
    });
  });

  describe('GET /v1/tokens/:id', () => {
    it('reads a token record without the token itself', async () => {
      const token = await issue({ scopes: ['keys:read', 'audit:read'], owner: 'reader', purpose: 'dashboards', ttl: '7d' });
      const res = await ctx().request({ method: 'GET', url: `/v1/tokens/${token.id}` });
      expect(res.statusCode, res.body).toBe(200);
      const { key: _key, ...record } = token;
      expect(res.json()).toEqual(record);
      expect(res.json()).toMatchObject({ kind: 'management', scopes: ['keys:read', 'audit:read'], owner: 'reader', purpose: 'dashboards', expiresAt: iso(ctx().clock.now() + 7 * DAY) });
      expect(res.body).not.toContain(token.key);
    });

    it('answers 404 for a service key id and an unknown id, 400 for a malformed one', async () => {
      const service = await createKey(ctx());
      expectProblem(await ctx().request({ method: 'GET', url: `/v1/tokens/${service.id}` }), 404, 'ERR_KEY_NOT_FOUND', 'not_found');
      expectProblem(await ctx().request({ method: 'GET', url: `/v1/tokens/${unknownKeyId()}` }), 404, 'ERR_KEY_NOT_FOUND', 'not_found');
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/tokens/key_nope' }), 400, 'ERR_INVALID_REQUEST');
    });

    it('answers 403 to a token without tokens:read', async () => {
      const token = await ctx().token(['keys:read', 'tokens:create']);
      expectProblem(await ctx().request({ method: 'GET', url: `/v1/tokens/${ctx().rootTokenId}`, token }), 403, 'ERR_FORBIDDEN');
    });
  });

  describe('POST /v1/tokens/:id/rotate', () => {
    it("answers 201 with a new token carrying the old one's scopes and settings, the old one superseded", async () => {
      const old = await issue({ scopes: ['keys:read', 'audit:read'], owner: 'ci', purpose: 'deploys', ipAllowlist: ['10.0.0.0/8'], ttl: '10d' });
      ctx().clock.advance(HOUR);
      const now = ctx().clock.now();
      const res = await rotate(old.id, { overlap: '1h' });
      expect(res.statusCode, res.body).toBe(201);
      expect(res.headers['cache-control']).toBe('no-store');
      const body = res.json();
      expect(body.key).toMatch(/^ksm_live_[0-9A-Za-z]{22}_[0-9A-Za-z]{49}$/);
      expect(body.key).not.toBe(old.key);
      expect(idOf(body.key)).toBe(body.id);
      expect(body).toMatchObject({
        kind: 'management',
        status: 'active',
        scopes: ['keys:read', 'audit:read'],
        owner: 'ci',
        purpose: 'deploys',
        ipAllowlist: ['10.0.0.0/8'],
        replaces: old.id,
        replacedBy: null,
        createdBy: ctx().rootTokenId,
        createdAt: iso(now),
        expiresAt: iso(now + 10 * DAY),
      });
      expect(body.previous).toMatchObject({ id: old.id, kind: 'management', status: 'superseded', replacedBy: body.id, graceEndsAt: iso(now + HOUR) });
      expect(body.previous).not.toHaveProperty('key');
      const { key: _key, previous: _previous, ...record } = body;
      expect(await getToken(ctx(), body.id)).toEqual(record);
      expect(await getToken(ctx(), old.id)).toMatchObject({ status: 'superseded', replacedBy: body.id });
    });

    it('keeps the old token authenticating during the overlap, refuses it after, and the new one works throughout', async () => {
      const old = await issue({ scopes: ['keys:read'] });
      expect((await call(old.key)).statusCode).toBe(200); // cached before the rotation
      const res = await rotate(old.id, { overlap: '1h' });
      expect(res.statusCode, res.body).toBe(201);
      const fresh = res.json().key as string;
      expect((await call(old.key)).statusCode).toBe(200);
      expect((await call(fresh)).statusCode).toBe(200);
      ctx().clock.advance(HOUR - 1);
      expect((await call(old.key)).statusCode).toBe(200);
      ctx().clock.advance(1);
      expect(expectProblem(await call(old.key), 401, 'ERR_UNAUTHENTICATED').detail).toContain('expired');
      expect((await call(fresh)).statusCode).toBe(200);
    });

    it('uses a 24h overlap by default and takes a ttl or expiresAt for the successor', async () => {
      const a = await issue({ scopes: ['keys:read'] });
      const byDefault = await rotate(a.id, {});
      expect(byDefault.statusCode, byDefault.body).toBe(201);
      expect(byDefault.json().previous.graceEndsAt).toBe(iso(ctx().clock.now() + DAY));
      const withTtl = await rotate(byDefault.json().id, { overlap: '1h', ttl: '2d' });
      expect(withTtl.statusCode, withTtl.body).toBe(201);
      expect(withTtl.json().expiresAt).toBe(iso(ctx().clock.now() + 2 * DAY));
      const at = iso(ctx().clock.now() + 3 * DAY);
      const withAt = await rotate(withTtl.json().id, { expiresAt: at });
      expect(withAt.statusCode, withAt.body).toBe(201);
      expect(withAt.json().expiresAt).toBe(at);
    });

    it('with no body at all, rotates with the defaults', async () => {
      const old = await issue({ scopes: ['keys:read'] });
      const res = await ctx().request({ method: 'POST', url: `/v1/tokens/${old.id}/rotate` });
      expect(res.statusCode, res.body).toBe(201);
      expect(res.json().previous.graceEndsAt).toBe(iso(ctx().clock.now() + DAY));
    });

    it('records token.rotated and token.issued under the request id, without either token', async () => {
      const old = await issue({ scopes: ['keys:read'] });
      const caller = await ctx().token(['tokens:rotate', 'keys:read']);
      const head = await auditHead(ctx());
      const res = await rotate(old.id, { overlap: '2h' }, caller);
      expect(res.statusCode, res.body).toBe(201);
      const events = await auditAfter(ctx(), head);
      const requestId = res.headers['x-request-id'];
      expect(events.map((event) => [event.action, event.target, event.actor, event.requestId])).toEqual([
        ['token.rotated', old.id, idOf(caller), requestId],
        ['token.issued', res.json().id, idOf(caller), requestId],
      ]);
      expect(events[0]!.data).toMatchObject({ successor: res.json().id, overlap: '2h' });
      expect(events[1]!.data).toMatchObject({ rotatedFrom: old.id, scopes: ['keys:read'] });
      for (const secret of [old.key, res.json().key, caller]) expect(JSON.stringify(events)).not.toContain(secret);
    });

    it('lets a token rotate itself; the successor holds the same scopes', async () => {
      const self = await issue({ scopes: ['tokens:rotate', 'keys:read'] });
      const res = await rotate(self.id, { overlap: '1h' }, self.key);
      expect(res.statusCode, res.body).toBe(201);
      expect(res.json()).toMatchObject({ scopes: ['tokens:rotate', 'keys:read'], createdBy: self.id, replaces: self.id });
      expect((await call(res.json().key)).statusCode).toBe(200);
    });

    it('answers 409 to rotating a revoked or an already rotated token', async () => {
      const revoked = await issue({ scopes: ['keys:read'] });
      await revokeToken(ctx(), revoked.id);
      expectProblem(await rotate(revoked.id), 409, 'ERR_KEY_REVOKED', 'conflict');
      const rotated = await issue({ scopes: ['keys:read'] });
      const successor = (await rotate(rotated.id)).json();
      expect(expectProblem(await rotate(rotated.id), 409, 'ERR_KEY_SUPERSEDED', 'conflict').detail).toContain(successor.id);
    });

    it('answers 409 ERR_KEY_EXPIRED to rotating an expired token', async () => {
      const old = await issue({ scopes: ['keys:read'], ttl: '1h' });
      ctx().clock.advance(HOUR);
      expectProblem(await rotate(old.id), 409, 'ERR_KEY_EXPIRED', 'conflict');
    });

    it('refuses a bad or too long overlap, unknown fields and ttl with expiresAt, rotating nothing', async () => {
      const old = await issue({ scopes: ['keys:read'] });
      await expectNothingWritten(ctx(), async () => {
        expect(expectProblem(await rotate(old.id, { overlap: 'soon' }), 400, undefined, 'invalid_request').detail).toContain('overlap');
        expectProblem(await rotate(old.id, { overlap: '91d' }), 422, 'ERR_TTL_TOO_LONG', 'policy_violation');
        expectProblem(await rotate(old.id, { ttl: '91d' }), 422, 'ERR_TTL_TOO_LONG', 'policy_violation');
        expect(expectProblem(await rotate(old.id, { scopes: ['*'] }), 400, 'ERR_INVALID_REQUEST').detail).toContain('scopes');
        expectProblem(await rotate(old.id, { ttl: '1d', expiresAt: iso(ctx().clock.now() + DAY) }), 400, 'ERR_INVALID_REQUEST');
      });
      expect((await getToken(ctx(), old.id)).replacedBy).toBeNull();
    });

    it('answers 404 for a service key id or an unknown id, rotating nothing', async () => {
      const service = await createKey(ctx());
      await expectNothingWritten(ctx(), async () => {
        expectProblem(await rotate(service.id), 404, 'ERR_KEY_NOT_FOUND', 'not_found');
        expectProblem(await rotate(unknownKeyId()), 404, 'ERR_KEY_NOT_FOUND', 'not_found');
      });
      expect((await getKey(ctx(), service.id)).replacedBy).toBeNull();
    });

    it('answers 401 without a token and 403 without tokens:rotate, rotating nothing', async () => {
      const old = await issue({ scopes: ['keys:read'] });
      expectProblem(await ctx().request({ method: 'POST', url: `/v1/tokens/${old.id}/rotate`, token: null, body: {} }), 401, 'ERR_UNAUTHENTICATED');
      const token = await ctx().token(['keys:*', 'tokens:create', 'tokens:read', 'tokens:revoke']);
      expect(expectProblem(await rotate(old.id, {}, token), 403, 'ERR_FORBIDDEN', 'forbidden').detail).toContain('tokens:rotate');
      expect((await getToken(ctx(), old.id)).replacedBy).toBeNull();
    });
  });

  describe('POST /v1/tokens/:id/revoke', () => {
    it("revokes with a reason, and the token's very next call answers 401", async () => {
      const token = await issue({ scopes: ['keys:read'] });
      expect((await call(token.key)).statusCode).toBe(200); // cached before the revocation
      const res = await revoke(token.id, { reason: 'left the team' });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toMatchObject({ id: token.id, kind: 'management', status: 'revoked', revokedAt: iso(ctx().clock.now()), revokeReason: 'left the team' });
      expect(res.json()).not.toHaveProperty('key');
      expect(expectProblem(await call(token.key), 401, 'ERR_UNAUTHENTICATED').detail).toContain('revoked');
      expect((await getToken(ctx(), token.id)).status).toBe('revoked');
    });

    it('revokes with no body at all', async () => {
      const token = await issue({ scopes: ['keys:read'] });
      const res = await revoke(token.id);
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toMatchObject({ status: 'revoked', revokeReason: null });
      expectProblem(await call(token.key), 401, 'ERR_UNAUTHENTICATED');
    });

    it('records token.revoked with the reason, by whom, under the request id', async () => {
      const token = await issue({ scopes: ['keys:read'] });
      const caller = await ctx().token(['tokens:revoke', 'keys:read']);
      const head = await auditHead(ctx());
      const res = await revoke(token.id, { reason: 'leaked' }, caller);
      expect(res.statusCode, res.body).toBe(200);
      const events = await auditAfter(ctx(), head);
      expect(events.map((event) => [event.action, event.target, event.actor, event.requestId, event.data])).toEqual([
        ['token.revoked', token.id, idOf(caller), res.headers['x-request-id'], { reason: 'leaked' }],
      ]);
      expect(JSON.stringify(events)).not.toContain(token.key);
    });

    it('answers 409 ERR_KEY_REVOKED when revoking twice, keeping the first reason', async () => {
      const token = await issue({ scopes: ['keys:read'] });
      await revokeToken(ctx(), token.id, { reason: 'first' });
      expectProblem(await revoke(token.id, { reason: 'second' }), 409, 'ERR_KEY_REVOKED', 'conflict');
      expect((await getToken(ctx(), token.id)).revokeReason).toBe('first');
    });

    it('lets a token revoke itself, after which it is refused', async () => {
      const self = await issue({ scopes: ['tokens:revoke', 'keys:read'] });
      expect((await revoke(self.id, { reason: 'done' }, self.key)).statusCode).toBe(200);
      expectProblem(await call(self.key), 401, 'ERR_UNAUTHENTICATED');
    });

    it("revokes a superseded token during its overlap without touching the successor", async () => {
      const old = await issue({ scopes: ['keys:read'] });
      const successor = (await rotate(old.id, { overlap: '1h' })).json();
      await revokeToken(ctx(), old.id, { reason: 'leaked' });
      expectProblem(await call(old.key), 401, 'ERR_UNAUTHENTICATED');
      expect((await call(successor.key)).statusCode).toBe(200);
    });

    it('refuses a reason with control characters or unknown fields, revoking nothing', async () => {
      const token = await issue({ scopes: ['keys:read'] });
      await expectNothingWritten(ctx(), async () => {
        expect(problemFields(expectProblem(await revoke(token.id, { reason: 'a\u0000b' }), 400, 'ERR_INVALID_REQUEST'))).toContain('reason');
        expect(expectProblem(await revoke(token.id, { reason: 'x', cascade: true }), 400, 'ERR_INVALID_REQUEST').detail).toContain('cascade');
      });
      expect((await call(token.key)).statusCode).toBe(200);
    });

    it('answers 404 for a service key id or an unknown id, leaving the key valid', async () => {
      const service = await createKey(ctx());
      await expectNothingWritten(ctx(), async () => {
        expectProblem(await revoke(service.id, { reason: 'x' }), 404, 'ERR_KEY_NOT_FOUND', 'not_found');
        expectProblem(await revoke(unknownKeyId(), {}), 404, 'ERR_KEY_NOT_FOUND', 'not_found');
      });
      expect((await verifyKey(ctx(), service.key)).code).toBe('VALID');
    });

    it('answers 401 without a token and 403 without tokens:revoke, revoking nothing', async () => {
      const token = await issue({ scopes: ['keys:read'] });
      expectProblem(await ctx().request({ method: 'POST', url: `/v1/tokens/${token.id}/revoke`, token: null, body: {} }), 401, 'ERR_UNAUTHENTICATED');
      const caller = await ctx().token(['keys:*', 'tokens:create', 'tokens:read', 'tokens:rotate']);
      expect(expectProblem(await revoke(token.id, {}, caller), 403, 'ERR_FORBIDDEN', 'forbidden').detail).toContain('tokens:revoke');
      expect((await call(token.key)).statusCode).toBe(200);
    });
  });

  describe('scope escalation', () => {
    it('refuses a tokens:* token rotating or revoking the root token with 403 ERR_SCOPE_ESCALATION, writing nothing', async () => {
      const caller = await ctx().token(['tokens:*']);
      await expectNothingWritten(ctx(), async () => {
        for (const res of [await rotate(ctx().rootTokenId, { overlap: '1h' }, caller), await revoke(ctx().rootTokenId, { reason: 'coup' }, caller)]) {
          const problem = expectProblem(res, 403, 'ERR_SCOPE_ESCALATION', 'forbidden');
          expect(res.body).not.toContain(caller);
          expect(res.body).not.toContain(ctx().rootToken);
          expect(problem.detail).not.toMatch(/ksm_/);
        }
      });
      expect(await getToken(ctx(), ctx().rootTokenId)).toMatchObject({ status: 'active', replacedBy: null, revokedAt: null });
      expect((await call(ctx().rootToken)).statusCode).toBe(200);
    });

    it('refuses to rotate or revoke a token holding any scope the caller lacks, and allows it once covered', async () => {
      const caller = await ctx().token(['tokens:rotate', 'tokens:revoke', 'keys:read']);
      const stronger = [['keys:read', 'keys:create'], ['keys:*'], ['audit:read'], ['tokens:create'], ['*']];
      const targets = await Promise.all(stronger.map((scopes) => issue({ scopes })));
      await expectNothingWritten(ctx(), async () => {
        for (const target of targets) {
          expectProblem(await rotate(target.id, { overlap: '1h' }, caller), 403, 'ERR_SCOPE_ESCALATION', 'forbidden');
          expectProblem(await revoke(target.id, { reason: 'x' }, caller), 403, 'ERR_SCOPE_ESCALATION', 'forbidden');
        }
      });
      for (const target of targets) expect((await getToken(ctx(), target.id)).status).toBe('active');
      const weaker = await issue({ scopes: ['keys:read', 'tokens:rotate'] });
      const rotated = await rotate(weaker.id, { overlap: '1h' }, caller);
      expect(rotated.statusCode, rotated.body).toBe(201);
      expect((await revoke(rotated.json().id, { reason: 'x' }, caller)).statusCode).toBe(200);
    });

    it('lets a * token rotate and revoke another * token', async () => {
      const caller = await ctx().token(['*']);
      const target = await issue({ scopes: ['*'] });
      const rotated = await rotate(target.id, { overlap: '1h' }, caller);
      expect(rotated.statusCode, rotated.body).toBe(201);
      expect(rotated.json()).toMatchObject({ scopes: ['*'], createdBy: idOf(caller) });
      const revoked = await revoke(rotated.json().id, { reason: 'done' }, caller);
      expect(revoked.statusCode, revoked.body).toBe(200);
      expectProblem(await call(rotated.json().key), 401, 'ERR_UNAUTHENTICATED');
    });

    it('checks the scope before anything else: 403 ERR_FORBIDDEN, not escalation, for a caller without tokens:rotate', async () => {
      const caller = await ctx().token(['tokens:read']);
      expectProblem(await rotate(ctx().rootTokenId, {}, caller), 403, 'ERR_FORBIDDEN');
      expectProblem(await revoke(ctx().rootTokenId, {}, caller), 403, 'ERR_FORBIDDEN');
    });
  });

  describe('token ids on the key routes', () => {
    it('answers 404 to rotating the root token through /v1/keys/:id/rotate, even as the root token', async () => {
      const head = await auditHead(ctx());
      const before = await countRows(ctx());
      const res = await ctx().request({ method: 'POST', url: `/v1/keys/${ctx().rootTokenId}/rotate`, body: { overlap: '1h' } });
      expect(res.body).not.toMatch(/ksm_live_/);
      expect(expectProblem(res, 404, 'ERR_KEY_NOT_FOUND', 'not_found').detail).toContain(ctx().rootTokenId);
      expect(await countRows(ctx())).toEqual(before);
      expect(await auditAfter(ctx(), head)).toEqual([]);
      expect((await getToken(ctx(), ctx().rootTokenId)).replacedBy).toBeNull();
    });

    it('answers 404 ERR_KEY_NOT_FOUND on every /v1/keys/:id route for a token id, changing nothing', async () => {
      const token = await issue({ scopes: ['keys:read'] });
      const id = token.id;
      const routes: Array<['GET' | 'POST' | 'PATCH', string, unknown]> = [
        ['GET', `/v1/keys/${id}`, undefined],
        ['GET', `/v1/keys/${id}/usage`, undefined],
        ['PATCH', `/v1/keys/${id}`, { purpose: 'hijacked' }],
        ['POST', `/v1/keys/${id}/rotate`, { overlap: '1h' }],
        ['POST', `/v1/keys/${id}/revoke`, { reason: 'x' }],
        ['POST', `/v1/keys/${id}/disable`, {}],
        ['POST', `/v1/keys/${id}/enable`, {}],
        ['POST', `/v1/keys/${id}/retire`, {}],
      ];
      await expectNothingWritten(ctx(), async () => {
        for (const [method, url, body] of routes) {
          const res = await ctx().request({ method, url, ...(body !== undefined ? { body } : {}) });
          expectProblem(res, 404, 'ERR_KEY_NOT_FOUND', 'not_found');
        }
      });
      expect(await getToken(ctx(), id)).toMatchObject({ status: 'active', purpose: '', replacedBy: null, disabledAt: null, retiredAt: null });
      expect((await call(token.key)).statusCode).toBe(200);
    });
  });
});
