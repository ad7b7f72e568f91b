/** revoke, disable, enable, retire and PATCH: the state changes after issue. */
import { describe, expect, it } from 'vitest';
import { describeEachDialect } from '../support/databases.js';
import {
  DAY,
  HOUR,
  auditAfter,
  auditHead,
  changeKey,
  createKey,
  expectNothingWritten,
  expectProblem,
  getKey,
  idOf,
  iso,
  problemFields,
  unique,
  unknownKeyId,
  useContext,
  verifyKey,
} from './helpers.js';

describeEachDialect('key lifecycle', (dialect) => {
  const ctx = useContext(dialect);

  const post = (id: string, action: string, body?: unknown, token?: string) =>
    ctx().request({ method: 'POST', url: `/v1/keys/${id}/${action}`, ...(body !== undefined ? { body } : {}), ...(token ? { token } : {}) });
  const patch = (id: string, body: unknown, token?: string) =>
    ctx().request({ method: 'PATCH', url: `/v1/keys/${id}`, body, ...(token ? { token } : {}) });

  describe('POST /v1/keys/:id/revoke', () => {
    it('revokes with a reason, and the very next verify answers REVOKED', async () => {
      const created = await createKey(ctx());
      expect((await verifyKey(ctx(), created.key)).code).toBe('VALID');
      const res = await post(created.id, 'revoke', { reason: 'leaked in a CI log' });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toMatchObject({ id: created.id, status: 'revoked', revokedAt: iso(ctx().clock.now()), revokeReason: 'leaked in a CI log' });
      expect(res.json()).not.toHaveProperty('key');
      expect((await verifyKey(ctx(), created.key)).code).toBe('REVOKED');
      expect((await getKey(ctx(), created.id)).status).toBe('revoked');
    });

    it('revokes without a reason', async () => {
      const created = await createKey(ctx());
      const record = await changeKey(ctx(), created.id, 'revoke', {});
      expect(record).toMatchObject({ status: 'revoked', revokeReason: null });
    });

    it('revokes with no body at all', async () => {
      const created = await createKey(ctx());
      const res = await post(created.id, 'revoke');
      expect(res.statusCode, res.body).toBe(200);
      expect((await verifyKey(ctx(), created.key)).code).toBe('REVOKED');
    });

    it('answers 409 ERR_KEY_REVOKED when revoking twice, keeping the first reason', async () => {
      const created = await createKey(ctx());
      await changeKey(ctx(), created.id, 'revoke', { reason: 'first' });
      expectProblem(await post(created.id, 'revoke', { reason: 'second' }), 409, 'ERR_KEY_REVOKED', 'conflict');
      expect((await getKey(ctx(), created.id)).revokeReason).toBe('first');
    });

    it('refuses a reason with control characters or over 500 characters', async () => {
      const created = await createKey(ctx());
      expect(problemFields(expectProblem(await post(created.id, 'revoke', { reason: 'a\u0000b' }), 400, 'ERR_INVALID_REQUEST'))).toContain('reason');
      expect(problemFields(expectProblem(await post(created.id, 'revoke', { reason: 'r'.repeat(501) }), 400, 'ERR_INVALID_REQUEST'))).toContain('reason');
      expect((await getKey(ctx(), created.id)).status).toBe('active');
    });

    it('answers 404 for an unknown id', async () => {
      expectProblem(await post(unknownKeyId(), 'revoke', {}), 404, 'ERR_KEY_NOT_FOUND', 'not_found');
    });

    it('answers 404 ERR_KEY_NOT_FOUND for a management token id, leaving the token working', async () => {
      const token = await ctx().token(['keys:read']);
      await expectNothingWritten(ctx(), async () => {
        expectProblem(await post(idOf(token), 'revoke', { reason: 'rotated out' }), 404, 'ERR_KEY_NOT_FOUND', 'not_found');
      });
      expect((await ctx().request({ method: 'GET', url: '/v1/keys?limit=1', token })).statusCode).toBe(200);
    });

    it('answers 403 to a token without keys:revoke', async () => {
      const created = await createKey(ctx());
      const token = await ctx().token(['keys:read', 'keys:update', 'keys:rotate']);
      expectProblem(await post(created.id, 'revoke', {}, token), 403, 'ERR_FORBIDDEN', 'forbidden');
      expect((await verifyKey(ctx(), created.key)).code).toBe('VALID');
    });
  });

  describe('POST /v1/keys/:id/disable and /enable', () => {
    it('disables a key (DISABLED on verify) and enables it again', async () => {
      const created = await createKey(ctx());
      expect((await verifyKey(ctx(), created.key)).code).toBe('VALID');
      const disabled = await changeKey(ctx(), created.id, 'disable');
      expect(disabled).toMatchObject({ status: 'disabled', disabledAt: iso(ctx().clock.now()) });
      expect((await verifyKey(ctx(), created.key)).code).toBe('DISABLED');
      const enabled = await changeKey(ctx(), created.id, 'enable');
      expect(enabled).toMatchObject({ status: 'active', disabledAt: null });
      expect((await verifyKey(ctx(), created.key)).code).toBe('VALID');
    });

    it.each(['disable', 'enable', 'retire'])('accepts %s with an empty body (no content at all)', async (action) => {
      const created = await createKey(ctx(), { ttl: '1h' });
      if (action === 'retire') await changeKey(ctx(), created.id, 'revoke', {});
      const res = await post(created.id, action);
      expect(res.statusCode, res.body).toBe(200);
    });

    it('treats disabling a disabled key, or enabling an active one, as a no-op without an audit event', async () => {
      const created = await createKey(ctx());
      await changeKey(ctx(), created.id, 'disable');
      const head = await auditHead(ctx());
      expect((await changeKey(ctx(), created.id, 'disable')).status).toBe('disabled');
      await changeKey(ctx(), created.id, 'enable');
      expect((await changeKey(ctx(), created.id, 'enable')).status).toBe('active');
      const actions = (await auditAfter(ctx(), head)).map((event) => event.action);
      expect(actions).toEqual(['key.enabled']);
    });

    it('answers 409 when disabling or enabling a revoked key', async () => {
      const created = await createKey(ctx());
      await changeKey(ctx(), created.id, 'revoke', {});
      expectProblem(await post(created.id, 'disable', {}), 409, 'ERR_KEY_REVOKED', 'conflict');
      expectProblem(await post(created.id, 'enable', {}), 409, 'ERR_KEY_REVOKED', 'conflict');
    });

    it('refuses a body with fields', async () => {
      const created = await createKey(ctx());
      expect(expectProblem(await post(created.id, 'disable', { reason: 'x' }), 400, 'ERR_INVALID_REQUEST').detail).toContain('reason');
      expect((await getKey(ctx(), created.id)).status).toBe('active');
    });

    it('answers 404 for unknown ids and 403 without keys:revoke', async () => {
      expectProblem(await post(unknownKeyId(), 'disable', {}), 404, 'ERR_KEY_NOT_FOUND');
      expectProblem(await post(unknownKeyId(), 'enable', {}), 404, 'ERR_KEY_NOT_FOUND');
      const created = await createKey(ctx());
      const token = await ctx().token(['keys:update']);
      expectProblem(await post(created.id, 'disable', {}, token), 403, 'ERR_FORBIDDEN');
      expectProblem(await post(created.id, 'enable', {}, token), 403, 'ERR_FORBIDDEN');
      expect((await getKey(ctx(), created.id)).status).toBe('active');
    });

    it('answers 404 ERR_KEY_NOT_FOUND to disabling or enabling a management token, leaving it working', async () => {
      const token = await ctx().token(['keys:read']);
      await expectNothingWritten(ctx(), async () => {
        expectProblem(await post(idOf(token), 'disable', {}), 404, 'ERR_KEY_NOT_FOUND', 'not_found');
        expectProblem(await post(idOf(token), 'enable', {}), 404, 'ERR_KEY_NOT_FOUND', 'not_found');
      });
      expect((await ctx().request({ method: 'GET', url: '/v1/keys?limit=1', token })).statusCode).toBe(200);
    });
  });

  describe('POST /v1/keys/:id/retire', () => {
    it('refuses to retire an active key with 409 ERR_KEY_NOT_RETIRABLE', async () => {
      const created = await createKey(ctx());
      expectProblem(await post(created.id, 'retire', {}), 409, 'ERR_KEY_NOT_RETIRABLE', 'conflict');
      expect((await verifyKey(ctx(), created.key)).code).toBe('VALID');
    });

    it('refuses to retire a disabled key that has not expired', async () => {
      const created = await createKey(ctx());
      await changeKey(ctx(), created.id, 'disable');
      expectProblem(await post(created.id, 'retire', {}), 409, 'ERR_KEY_NOT_RETIRABLE');
    });

    it('retires a revoked key: verify answers NOT_FOUND, the record stays readable', async () => {
      const created = await createKey(ctx(), { owner: 'retiree', labels: { team: 'a' } });
      await changeKey(ctx(), created.id, 'revoke', { reason: 'done' });
      expect((await verifyKey(ctx(), created.key)).code).toBe('REVOKED');
      const retired = await changeKey(ctx(), created.id, 'retire');
      expect(retired).toMatchObject({ id: created.id, retiredAt: iso(ctx().clock.now()), status: 'revoked' });
      expect(await verifyKey(ctx(), created.key)).toEqual({ valid: false, code: 'NOT_FOUND' });
      expect(await getKey(ctx(), created.id)).toMatchObject({
        owner: 'retiree',
        labels: { team: 'a' },
        revokeReason: 'done',
        retiredAt: retired.retiredAt,
      });
    });

    it('retires an expired key', async () => {
      const created = await createKey(ctx(), { ttl: '1h' });
      ctx().clock.advance(HOUR);
      expect((await verifyKey(ctx(), created.key)).code).toBe('EXPIRED');
      const retired = await changeKey(ctx(), created.id, 'retire');
      expect(retired).toMatchObject({ status: 'expired', retiredAt: iso(ctx().clock.now()) });
      expect((await verifyKey(ctx(), created.key)).code).toBe('NOT_FOUND');
    });

    it('retires a superseded key only once its grace has ended', async () => {
      const created = await createKey(ctx());
      const rotated = await ctx().request({ method: 'POST', url: `/v1/keys/${created.id}/rotate`, body: { overlap: '1h' } });
      expect(rotated.statusCode).toBe(201);
      expectProblem(await post(created.id, 'retire', {}), 409, 'ERR_KEY_NOT_RETIRABLE');
      ctx().clock.advance(HOUR);
      expect((await changeKey(ctx(), created.id, 'retire')).retiredAt).not.toBeNull();
      expect((await verifyKey(ctx(), created.key)).code).toBe('NOT_FOUND');
      expect((await verifyKey(ctx(), rotated.json().key)).code).toBe('VALID');
    });

    it('answers 409 ERR_KEY_RETIRED to retiring twice, and to later changes', async () => {
      const created = await createKey(ctx());
      await changeKey(ctx(), created.id, 'revoke', {});
      await changeKey(ctx(), created.id, 'retire');
      expectProblem(await post(created.id, 'retire', {}), 409, 'ERR_KEY_RETIRED', 'conflict');
      expectProblem(await post(created.id, 'disable', {}), 409, 'ERR_KEY_RETIRED');
      expectProblem(await patch(created.id, { purpose: 'x' }), 409, 'ERR_KEY_RETIRED');
    });

    it('answers 404 for an unknown id and 403 without keys:revoke', async () => {
      expectProblem(await post(unknownKeyId(), 'retire', {}), 404, 'ERR_KEY_NOT_FOUND');
      const created = await createKey(ctx());
      await changeKey(ctx(), created.id, 'revoke', {});
      const token = await ctx().token(['keys:read', 'keys:update']);
      expectProblem(await post(created.id, 'retire', {}, token), 403, 'ERR_FORBIDDEN');
      expect((await getKey(ctx(), created.id)).retiredAt).toBeNull();
    });
  });

  describe('PATCH /v1/keys/:id', () => {
    it('narrows scopes, and verify sees the narrower set at once', async () => {
      const created = await createKey(ctx(), { scopes: ['orders:read', 'orders:write'] });
      expect((await verifyKey(ctx(), created.key, { scopes: ['orders:write'] })).code).toBe('VALID');
      const res = await patch(created.id, { scopes: ['orders:read'] });
      expect(res.statusCode).toBe(200);
      expect(res.json().scopes).toEqual(['orders:read']);
      expect((await verifyKey(ctx(), created.key, { scopes: ['orders:write'] })).code).toBe('INSUFFICIENT_SCOPE');
      expect((await verifyKey(ctx(), created.key, { scopes: ['orders:read'] })).code).toBe('VALID');
    });

    it('narrows a wildcard to one of the scopes it covers', async () => {
      const created = await createKey(ctx(), { scopes: ['orders:*'] });
      const res = await patch(created.id, { scopes: ['orders:read', 'orders:refund'] });
      expect(res.statusCode).toBe(200);
      expect(res.json().scopes).toEqual(['orders:read', 'orders:refund']);
    });

    it('refuses to widen scopes with 422 ERR_SCOPE_WIDENING', async () => {
      const created = await createKey(ctx(), { scopes: ['orders:read'] });
      for (const scopes of [['orders:read', 'orders:write'], ['orders:*'], ['*']]) {
        const problem = expectProblem(await patch(created.id, { scopes }), 422, 'ERR_SCOPE_WIDENING', 'policy_violation');
        expect(problemFields(problem)).toContain('scopes');
      }
      expect((await getKey(ctx(), created.id)).scopes).toEqual(['orders:read']);
    });

    it('shortens the expiry', async () => {
      const created = await createKey(ctx());
      const res = await patch(created.id, { ttl: '1h' });
      expect(res.json().expiresAt).toBe(iso(ctx().clock.now() + HOUR));
      ctx().clock.advance(HOUR);
      expect((await verifyKey(ctx(), created.key)).code).toBe('EXPIRED');
    });

    it('extends the expiry up to, but not past, created + 90 days', async () => {
      const created = await createKey(ctx(), { ttl: '1d' });
      ctx().clock.advance(DAY / 2);
      const now = ctx().clock.now();
      const tooFar = expectProblem(await patch(created.id, { ttl: '90d' }), 422, 'ERR_TTL_TOO_LONG', 'policy_violation');
      expect(problemFields(tooFar)).toContain('ttl');
      const atTooFar = expectProblem(
        await patch(created.id, { expiresAt: iso(Date.parse(created.createdAt) + 90 * DAY + 1000) }),
        422,
        'ERR_TTL_TOO_LONG',
      );
      expect(problemFields(atTooFar)).toContain('expiresAt');
      expect((await getKey(ctx(), created.id)).expiresAt).toBe(created.expiresAt);
      const ceiling = iso(Date.parse(created.createdAt) + 90 * DAY);
      const ok = await patch(created.id, { expiresAt: ceiling });
      expect(ok.statusCode).toBe(200);
      expect(ok.json().expiresAt).toBe(ceiling);
      expect(Date.parse(ceiling) - now).toBeLessThan(90 * DAY);
    });

    it('replaces labels as a whole', async () => {
      const owner = unique();
      const created = await createKey(ctx(), { owner, labels: { team: 'a', tier: 'gold' } });
      const res = await patch(created.id, { labels: { region: 'eu' } });
      expect(res.json().labels).toEqual({ region: 'eu' });
      const byOld = await ctx().request({ method: 'GET', url: `/v1/keys?owner=${owner}&label=team=a` });
      expect(byOld.json().data).toEqual([]);
      const byNew = await ctx().request({ method: 'GET', url: `/v1/keys?owner=${owner}&label=region=eu` });
      expect(byNew.json().data.map((key: { id: string }) => key.id)).toEqual([created.id]);
      expect((await patch(created.id, { labels: {} })).json().labels).toEqual({});
    });

    it('sets and clears the allowlist and rate limit, and changes the purpose', async () => {
      const created = await createKey(ctx());
      const set = await patch(created.id, { ipAllowlist: ['10.0.0.0/8'], rateLimit: { limit: 1, window: '1h' }, purpose: 'batch jobs' });
      expect(set.json()).toMatchObject({ ipAllowlist: ['10.0.0.0/8'], rateLimit: { limit: 1, window: '1h' }, purpose: 'batch jobs' });
      expect((await verifyKey(ctx(), created.key, { ip: '192.0.2.1' })).code).toBe('IP_NOT_ALLOWED');
      expect((await verifyKey(ctx(), created.key, { ip: '10.0.0.1' })).code).toBe('VALID');
      expect((await verifyKey(ctx(), created.key, { ip: '10.0.0.1' })).code).toBe('RATE_LIMITED');
      const cleared = await patch(created.id, { ipAllowlist: null, rateLimit: null });
      expect(cleared.json()).toMatchObject({ ipAllowlist: null, rateLimit: null });
      expect((await verifyKey(ctx(), created.key, { ip: '192.0.2.1' })).code).toBe('VALID');
    });

    it('records key.updated with what changed, by whom, under the request id', async () => {
      const created = await createKey(ctx(), { scopes: ['a:b', 'c:d'] });
      const token = await ctx().token(['keys:update']);
      const head = await auditHead(ctx());
      const res = await patch(created.id, { scopes: ['a:b'], purpose: 'narrowed' }, token);
      expect(res.statusCode).toBe(200);
      expect(res.json().updatedAt).toBe(iso(ctx().clock.now()));
      const events = await auditAfter(ctx(), head);
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({
        action: 'key.updated',
        actor: idOf(token),
        target: created.id,
        requestId: res.headers['x-request-id'],
        data: { changed: { scopes: ['a:b'], purpose: 'narrowed' } },
      });
    });

    it('answers 409 ERR_KEY_EXPIRED to a new ttl or expiresAt for an expired key, which stays expired', async () => {
      const created = await createKey(ctx(), { ttl: '1h' });
      ctx().clock.advance(2 * HOUR);
      expect((await verifyKey(ctx(), created.key)).code).toBe('EXPIRED');
      await expectNothingWritten(ctx(), async () => {
        expectProblem(await patch(created.id, { ttl: '1d' }), 409, 'ERR_KEY_EXPIRED', 'conflict');
        expectProblem(await patch(created.id, { expiresAt: iso(ctx().clock.now() + DAY) }), 409, 'ERR_KEY_EXPIRED', 'conflict');
      });
      expect(await getKey(ctx(), created.id)).toMatchObject({ status: 'expired', expiresAt: created.expiresAt });
      expect((await verifyKey(ctx(), created.key)).code).toBe('EXPIRED');
    });

    it('answers 409 for a revoked key', async () => {
      const created = await createKey(ctx(), { scopes: ['a:b'] });
      await changeKey(ctx(), created.id, 'revoke', {});
      expectProblem(await patch(created.id, { purpose: 'x' }), 409, 'ERR_KEY_REVOKED', 'conflict');
      expectProblem(await patch(created.id, { scopes: [] }), 409, 'ERR_KEY_REVOKED');
    });

    it('refuses an empty body {} with 400', async () => {
      const created = await createKey(ctx());
      const problem = expectProblem(await patch(created.id, {}), 400, 'ERR_INVALID_REQUEST', 'invalid_request');
      expect(problem.detail).toMatch(/at least one field/);
    });

    it('refuses unknown fields, owner changes, bad CIDRs and ttl with expiresAt', async () => {
      const created = await createKey(ctx());
      expect(expectProblem(await patch(created.id, { colour: 'red' }), 400).detail).toContain('colour');
      expect(expectProblem(await patch(created.id, { owner: 'someone-else' }), 400).detail).toContain('owner');
      expect(JSON.stringify(expectProblem(await patch(created.id, { ipAllowlist: ['10.0.0.0/40'] }), 400))).toContain('ipAllowlist');
      expectProblem(await patch(created.id, { ttl: '1d', expiresAt: iso(ctx().clock.now() + DAY) }), 400, 'ERR_INVALID_REQUEST');
      expect(expectProblem(await patch(created.id, { ttl: '-1d' }), 400).detail).toContain('ttl');
      expect(await getKey(ctx(), created.id)).toMatchObject({ owner: 'team-test', ipAllowlist: null, expiresAt: created.expiresAt });
    });

    it('answers 404 for an unknown id, 401 without a token and 403 without keys:update', async () => {
      expectProblem(await patch(unknownKeyId(), { purpose: 'x' }), 404, 'ERR_KEY_NOT_FOUND', 'not_found');
      const created = await createKey(ctx(), { purpose: 'before' });
      expectProblem(await ctx().request({ method: 'PATCH', url: `/v1/keys/${created.id}`, token: null, body: { purpose: 'x' } }), 401, 'ERR_UNAUTHENTICATED');
      const token = await ctx().token(['keys:read', 'keys:revoke', 'keys:rotate']);
      expectProblem(await patch(created.id, { purpose: 'x' }, token), 403, 'ERR_FORBIDDEN', 'forbidden');
      expect((await getKey(ctx(), created.id)).purpose).toBe('before');
    });
  });
});
