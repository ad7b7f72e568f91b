import { describe, expect, it } from 'vitest';
import { describeEachDialect } from '../support/databases.js';
import {
  DAY,
  HOUR,
  allPropertyNames,
  auditAfter,
  auditHead,
  createKey,
  expectNothingWritten,
  expectProblem,
  idOf,
  iso,
  problemFields,
  unique,
  useContext,
  verifyKey,
} from './helpers.js';

const KEY_RE = /^ks_live_[0-9A-Za-z]{22}_[0-9A-Za-z]{49}$/;

describeEachDialect('POST /v1/keys', (dialect) => {
  const ctx = useContext(dialect);

  describe('happy path', () => {
    it('issues a live key that expires after the default 30 days', async () => {
      const now = ctx().clock.now();
      const res = await ctx().request({ method: 'POST', url: '/v1/keys', body: { owner: 'team-a' } });
      expect(res.statusCode).toBe(201);
      expect(res.headers['cache-control']).toBe('no-store');
      const body = res.json();
      expect(body.key).toMatch(KEY_RE);
      expect(body.id).toMatch(/^key_[0-9A-Za-z]{22}$/);
      expect(idOf(body.key)).toBe(body.id);
      expect(body).toMatchObject({
        kind: 'service',
        prefix: 'ks',
        env: 'live',
        status: 'active',
        owner: 'team-a',
        purpose: '',
        scopes: [],
        labels: {},
        ipAllowlist: null,
        rateLimit: null,
        createdAt: iso(now),
        expiresAt: iso(now + 30 * DAY),
        createdBy: ctx().rootTokenId,
        revokedAt: null,
        disabledAt: null,
        replacedBy: null,
        replaces: null,
        retiredAt: null,
        lastUsedAt: null,
      });
    });

    it('stores owner, purpose, env, scopes, labels, allowlist and rate limit as given', async () => {
      const body = await createKey(ctx(), {
        owner: 'payments',
        purpose: 'checkout service',
        env: 'test',
        scopes: ['orders:read', 'orders:write', 'orders:read'],
        labels: { team: 'payments', tier: 'gold' },
        ipAllowlist: ['203.0.113.7', '10.0.0.0/8', '2001:DB8::/32'],
        rateLimit: { limit: 10, window: '1m' },
      });
      expect(body.key.startsWith('ks_test_')).toBe(true);
      expect(body).toMatchObject({
        owner: 'payments',
        purpose: 'checkout service',
        env: 'test',
        scopes: ['orders:read', 'orders:write'],
        labels: { team: 'payments', tier: 'gold' },
        ipAllowlist: ['203.0.113.7/32', '10.0.0.0/8', '2001:db8::/32'],
        rateLimit: { limit: 10, window: '1m' },
      });
      const read = await ctx().request({ method: 'GET', url: `/v1/keys/${body.id}` });
      const { key: _key, ...record } = body;
      expect(read.json()).toEqual(record);
    });

    it('sets the expiry from ttl', async () => {
      const now = ctx().clock.now();
      const body = await createKey(ctx(), { ttl: '7d' });
      expect(body.expiresAt).toBe(iso(now + 7 * DAY));
      const hours = await createKey(ctx(), { ttl: '36h' });
      expect(hours.expiresAt).toBe(iso(now + 36 * HOUR));
    });

    it('sets the expiry from expiresAt, normalised to UTC', async () => {
      const body = await createKey(ctx(), { expiresAt: '2026-11-20T12:00:00+02:00' });
      expect(body.expiresAt).toBe('2026-11-20T10:00:00.000Z');
    });

    it('accepts a ttl of exactly the 90 day maximum', async () => {
      const now = ctx().clock.now();
      const body = await createKey(ctx(), { ttl: '90d' });
      expect(body.expiresAt).toBe(iso(now + 90 * DAY));
    });

    it('uses a custom prefix in the key', async () => {
      const body = await createKey(ctx(), { prefix: 'acme' });
      expect(body.key).toMatch(/^acme_live_/);
      expect(body.prefix).toBe('acme');
      expect((await verifyKey(ctx(), body.key)).code).toBe('VALID');
    });

    it('issues a key that verifies as VALID straight away', async () => {
      const body = await createKey(ctx(), { scopes: ['orders:read'] });
      expect(await verifyKey(ctx(), body.key)).toMatchObject({
        valid: true,
        code: 'VALID',
        keyId: body.id,
        owner: 'team-test',
        env: 'live',
        scopes: ['orders:read'],
        expiresAt: body.expiresAt,
      });
    });

    it('issues a different key and id every time', async () => {
      const a = await createKey(ctx());
      const b = await createKey(ctx());
      expect(a.key).not.toBe(b.key);
      expect(a.id).not.toBe(b.id);
    });

    it('never returns a hash field, and shows the key only in the create response', async () => {
      const owner = unique();
      const body = await createKey(ctx(), { owner });
      expect(allPropertyNames(body).filter((name) => /hash/i.test(name))).toEqual([]);
      const read = await ctx().request({ method: 'GET', url: `/v1/keys/${body.id}` });
      expect(read.json()).not.toHaveProperty('key');
      expect(read.body).not.toContain(body.key);
      expect(allPropertyNames(read.json()).filter((name) => /hash|secret/i.test(name))).toEqual([]);
      const list = await ctx().request({ method: 'GET', url: `/v1/keys?owner=${owner}` });
      expect(list.json().data).toHaveLength(1);
      expect(list.json().data[0]).not.toHaveProperty('key');
      expect(list.body).not.toContain(body.key);
      expect(allPropertyNames(list.json()).filter((name) => /hash|secret/i.test(name))).toEqual([]);
    });

    it('records a key.issued audit event naming the caller, without the key', async () => {
      const head = await auditHead(ctx());
      const token = await ctx().token(['keys:create']);
      const res = await ctx().request({ method: 'POST', url: '/v1/keys', token, body: { owner: 'audited', scopes: ['a:b'] } });
      expect(res.statusCode).toBe(201);
      const body = res.json();
      expect(body.createdBy).toBe(idOf(token));
      const events = (await auditAfter(ctx(), head)).filter((event) => event.action === 'key.issued');
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ actor: idOf(token), target: body.id, requestId: res.headers['x-request-id'] });
      expect(events[0]!.data).toMatchObject({ owner: 'audited', scopes: ['a:b'], env: 'live' });
      expect(JSON.stringify(events)).not.toContain(body.key);
    });
  });

  describe('errors', () => {
    it('refuses a ttl over the 90 day maximum with 422 ERR_TTL_TOO_LONG', async () => {
      await expectNothingWritten(ctx(), async () => {
        for (const ttl of ['91d', '2161h', '999999999d']) {
          const res = await ctx().request({ method: 'POST', url: '/v1/keys', body: { owner: 'x', ttl } });
          const problem = expectProblem(res, 422, 'ERR_TTL_TOO_LONG', 'policy_violation');
          expect(problem.detail).toContain('90d');
        }
      });
    });

    it('refuses an expiresAt past the maximum with 422', async () => {
      const at = iso(ctx().clock.now() + 91 * DAY);
      const res = await ctx().request({ method: 'POST', url: '/v1/keys', body: { owner: 'x', expiresAt: at } });
      expectProblem(res, 422, 'ERR_TTL_TOO_LONG', 'policy_violation');
    });

    it.each(['-5d', 'abc', '0d', '0s', '', '5 d', '1.5d', '5w', '10'])('refuses ttl %j with a 400 naming ttl', async (ttl) => {
      await expectNothingWritten(ctx(), async () => {
        const res = await ctx().request({ method: 'POST', url: '/v1/keys', body: { owner: 'x', ttl } });
        const problem = expectProblem(res, 400, undefined, 'invalid_request');
        expect(problem.detail).toContain('ttl');
      });
    });

    it('refuses an expiresAt in the past, or now', async () => {
      for (const expiresAt of ['2020-01-01T00:00:00Z', iso(ctx().clock.now()), iso(ctx().clock.now() - 1)]) {
        const res = await ctx().request({ method: 'POST', url: '/v1/keys', body: { owner: 'x', expiresAt } });
        const problem = expectProblem(res, 400, 'ERR_INVALID_REQUEST', 'invalid_request');
        expect(problem.detail).toContain('expiresAt');
      }
    });

    it('refuses an expiresAt that is not a time', async () => {
      const res = await ctx().request({ method: 'POST', url: '/v1/keys', body: { owner: 'x', expiresAt: 'next tuesday' } });
      const problem = expectProblem(res, 400, 'ERR_INVALID_REQUEST');
      expect(problem.detail).toContain('expiresAt');
    });

    it('refuses both ttl and expiresAt', async () => {
      const expiresAt = iso(ctx().clock.now() + DAY);
      const res = await ctx().request({ method: 'POST', url: '/v1/keys', body: { owner: 'x', ttl: '1d', expiresAt } });
      const problem = expectProblem(res, 400, 'ERR_INVALID_REQUEST');
      expect(problem.detail).toMatch(/ttl/);
      expect(problem.detail).toMatch(/expiresAt/);
    });

    it.each([['10.0.0.0/33'], ['300.1.1.1'], ['2001:db8::/129'], ['10.0.0.0/8/8'], ['abc'], ['not-an-ip'], ['10.0.0.0/'], ['']])(
      'refuses the allowlist entry %j with a 400 naming ipAllowlist',
      async (entry) => {
        await expectNothingWritten(ctx(), async () => {
          const res = await ctx().request({ method: 'POST', url: '/v1/keys', body: { owner: 'x', ipAllowlist: ['10.0.0.0/8', entry] } });
          const problem = expectProblem(res, 400, 'ERR_INVALID_REQUEST', 'invalid_request');
          expect(JSON.stringify(problem)).toContain('ipAllowlist');
        });
      },
    );

    it.each([
      [{ limit: 0, window: '1m' }, 'rateLimit.limit'],
      [{ limit: 1.5, window: '1m' }, 'rateLimit.limit'],
      [{ limit: 5, window: 'abc' }, 'rateLimit.window'],
      [{ limit: 5, window: '2d' }, 'rateLimit.window'],
      [{ limit: 5 }, 'window'],
      [{ limit: '5', window: '1m' }, 'rateLimit.limit'],
    ])('refuses the rate limit %j', async (rateLimit, field) => {
      const res = await ctx().request({ method: 'POST', url: '/v1/keys', body: { owner: 'x', rateLimit } });
      const problem = expectProblem(res, 400, undefined, 'invalid_request');
      expect(JSON.stringify(problem)).toContain(field);
    });

    it('requires an owner', async () => {
      const missing = await ctx().request({ method: 'POST', url: '/v1/keys', body: { scopes: [] } });
      expect(expectProblem(missing, 400, 'ERR_INVALID_REQUEST').detail).toContain('owner');
      const empty = await ctx().request({ method: 'POST', url: '/v1/keys', body: { owner: '' } });
      expect(problemFields(expectProblem(empty, 400, 'ERR_INVALID_REQUEST'))).toContain('owner');
    });

    it.each(['KS', '1ab', 'a', 'a_b', 'abcdefghijklmnopq'])('refuses the prefix %j', async (prefix) => {
      const res = await ctx().request({ method: 'POST', url: '/v1/keys', body: { owner: 'x', prefix } });
      expect(expectProblem(res, 400, 'ERR_INVALID_REQUEST').detail).toContain('prefix');
    });

    it('refuses an unknown env', async () => {
      const res = await ctx().request({ method: 'POST', url: '/v1/keys', body: { owner: 'x', env: 'prod' } });
      expect(problemFields(expectProblem(res, 400, 'ERR_INVALID_REQUEST'))).toContain('env');
    });

    it('refuses label names that are not lowercase words', async () => {
      for (const labels of [{ Team: 'a' }, { 'a b': 'c' }, { '': 'x' }]) {
        const res = await ctx().request({ method: 'POST', url: '/v1/keys', body: { owner: 'x', labels } });
        expectProblem(res, 400, 'ERR_INVALID_REQUEST');
      }
    });

    it('refuses scopes with spaces or empty scopes', async () => {
      for (const scopes of [['orders read'], [''], ['a\nb']]) {
        const res = await ctx().request({ method: 'POST', url: '/v1/keys', body: { owner: 'x', scopes } });
        expectProblem(res, 400, 'ERR_INVALID_REQUEST');
      }
    });
  });

  describe('security', () => {
    it('answers 401 without a token', async () => {
      const res = await ctx().request({ method: 'POST', url: '/v1/keys', token: null, body: { owner: 'x' } });
      expectProblem(res, 401, 'ERR_UNAUTHENTICATED', 'unauthenticated');
    });

    it('answers 403 to a token without keys:create, and writes no key', async () => {
      const token = await ctx().token(['keys:read', 'keys:verify']);
      // The denial is itself audited, so compare the owner's keys rather than row counts.
      const before = await ctx().request({ method: 'GET', url: '/v1/keys?owner=denied' });
      const res = await ctx().request({ method: 'POST', url: '/v1/keys', token, body: { owner: 'denied' } });
      const problem = expectProblem(res, 403, 'ERR_FORBIDDEN', 'forbidden');
      expect(problem.detail).toContain('keys:create');
      const after = await ctx().request({ method: 'GET', url: '/v1/keys?owner=denied' });
      expect(after.json().data).toEqual(before.json().data);
    });

    it('lets a token with keys:create (or keys:*) issue keys', async () => {
      for (const scopes of [['keys:create'], ['keys:*']]) {
        const token = await ctx().token(scopes);
        const res = await ctx().request({ method: 'POST', url: '/v1/keys', token, body: { owner: 'scoped' } });
        expect(res.statusCode).toBe(201);
        expect(res.json().createdBy).toBe(idOf(token));
      }
    });
  });
});
