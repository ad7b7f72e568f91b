import { describe, expect, it } from 'vitest';
import { checksum } from '../../src/keys/index.js';
import { describeEachDialect } from '../support/databases.js';
import {
  HOUR,
  MINUTE,
  changeKey,
  createKey,
  expectProblem,
  unknownKey,
  useContext,
  verifyKey,
  wrongSecretFor,
} from './helpers.js';

/** Replaces the last character with a different base62 one: the checksum no longer matches. */
function flipLast(key: string): string {
  const last = key[key.length - 1];
  return key.slice(0, -1) + (last === 'A' ? 'B' : 'A');
}

/** Re-labels a key with another env (or prefix) and a correct checksum. */
function relabel(key: string, from: string, to: string): string {
  const body = key.slice(0, -6).replace(from, to);
  return body + checksum(body);
}

describeEachDialect('POST /v1/keys/verify', (dialect) => {
  const ctx = useContext(dialect);

  describe('VALID', () => {
    it('answers VALID with the key id, owner, env, scopes and expiry', async () => {
      const created = await createKey(ctx(), { owner: 'shop', env: 'test', scopes: ['orders:read'] });
      const outcome = await verifyKey(ctx(), created.key);
      expect(outcome).toEqual({
        valid: true,
        code: 'VALID',
        keyId: created.id,
        owner: 'shop',
        env: 'test',
        scopes: ['orders:read'],
        expiresAt: created.expiresAt,
      });
    });

    it('answers VALID when the key holds every scope asked for', async () => {
      const created = await createKey(ctx(), { scopes: ['orders:read', 'billing:read'] });
      expect((await verifyKey(ctx(), created.key, { scopes: ['orders:read', 'billing:read'] })).code).toBe('VALID');
      expect((await verifyKey(ctx(), created.key, { scopes: [] })).code).toBe('VALID');
    });

    it('lets a wildcard scope orders:* cover orders:read', async () => {
      const created = await createKey(ctx(), { scopes: ['orders:*'] });
      expect((await verifyKey(ctx(), created.key, { scopes: ['orders:read'] })).code).toBe('VALID');
      expect((await verifyKey(ctx(), created.key, { scopes: ['orders:write', 'orders:refund:full'] })).code).toBe('VALID');
    });

    it('works with a gateway token that holds only keys:verify', async () => {
      const created = await createKey(ctx());
      const token = await ctx().token(['keys:verify']);
      expect((await verifyKey(ctx(), created.key, {}, { token })).code).toBe('VALID');
    });

    it('never echoes the key in its answer', async () => {
      const created = await createKey(ctx());
      const res = await ctx().request({ method: 'POST', url: '/v1/keys/verify', body: { key: created.key } });
      expect(res.body).not.toContain(created.key);
    });
  });

  describe('MALFORMED', () => {
    it('answers MALFORMED for a bad checksum (last character flipped)', async () => {
      const created = await createKey(ctx());
      const outcome = await verifyKey(ctx(), flipLast(created.key));
      expect(outcome).toEqual({ valid: false, code: 'MALFORMED' });
    });

    it.each([
      ['garbage', 'hello world'],
      ['an empty string', ''],
      ['a lookalike with the wrong shape', 'ks_live_abc_def'],
      ['a long run of letters', 'a'.repeat(1024)],
      ['a JWT', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl'],
    ])('answers MALFORMED for %s', async (_label, key) => {
      expect(await verifyKey(ctx(), key)).toEqual({ valid: false, code: 'MALFORMED' });
    });

    it('answers MALFORMED for a key with control characters', async () => {
      const created = await createKey(ctx());
      for (const key of [`${created.key}\n`, `\u0000${created.key}`, created.key.slice(0, 20) + '\u0007' + created.key.slice(21), ` ${created.key}`]) {
        expect(await verifyKey(ctx(), key)).toEqual({ valid: false, code: 'MALFORMED' });
      }
    });

    it('refuses a key longer than the schema allows with 400, not a verify outcome', async () => {
      const res = await ctx().request({ method: 'POST', url: '/v1/keys/verify', body: { key: 'a'.repeat(1025) } });
      expect(expectProblem(res, 400, 'ERR_INVALID_REQUEST').detail).toContain('key');
    });
  });

  describe('NOT_FOUND', () => {
    it('answers NOT_FOUND for a well-formed key with an unknown id', async () => {
      expect(await verifyKey(ctx(), unknownKey())).toEqual({ valid: false, code: 'NOT_FOUND' });
    });

    it('answers NOT_FOUND for a known id with the wrong secret, naming nothing', async () => {
      const created = await createKey(ctx());
      const outcome = await verifyKey(ctx(), wrongSecretFor(created.key));
      expect(outcome).toEqual({ valid: false, code: 'NOT_FOUND' });
      // The real key still works afterwards.
      expect((await verifyKey(ctx(), created.key)).code).toBe('VALID');
    });

    it('answers NOT_FOUND when the env or prefix of a real key is changed', async () => {
      const created = await createKey(ctx());
      expect((await verifyKey(ctx(), relabel(created.key, 'ks_live_', 'ks_test_'))).code).toBe('NOT_FOUND');
      expect((await verifyKey(ctx(), relabel(created.key, 'ks_live_', 'kx_live_'))).code).toBe('NOT_FOUND');
    });

    it('answers NOT_FOUND for a management token presented as a key', async () => {
      const token = await ctx().token(['keys:verify']);
      expect(await verifyKey(ctx(), token)).toEqual({ valid: false, code: 'NOT_FOUND' });
      expect(await verifyKey(ctx(), ctx().rootToken)).toEqual({ valid: false, code: 'NOT_FOUND' });
    });
  });

  describe('state', () => {
    it('answers EXPIRED once the clock passes the expiry', async () => {
      const created = await createKey(ctx(), { ttl: '1h' });
      expect((await verifyKey(ctx(), created.key)).code).toBe('VALID');
      ctx().clock.advance(HOUR - 1);
      expect((await verifyKey(ctx(), created.key)).code).toBe('VALID');
      ctx().clock.advance(1);
      expect(await verifyKey(ctx(), created.key)).toMatchObject({ valid: false, code: 'EXPIRED', keyId: created.id, expiresAt: created.expiresAt });
    });

    it('answers REVOKED on the very next verify after a revoke, even with the row cached', async () => {
      const created = await createKey(ctx());
      expect((await verifyKey(ctx(), created.key)).code).toBe('VALID');
      await changeKey(ctx(), created.id, 'revoke', { reason: 'leaked' });
      expect(await verifyKey(ctx(), created.key)).toMatchObject({ valid: false, code: 'REVOKED', keyId: created.id });
    });

    it('answers DISABLED while disabled, and VALID again once enabled', async () => {
      const created = await createKey(ctx());
      expect((await verifyKey(ctx(), created.key)).code).toBe('VALID');
      await changeKey(ctx(), created.id, 'disable');
      expect(await verifyKey(ctx(), created.key)).toMatchObject({ valid: false, code: 'DISABLED' });
      await changeKey(ctx(), created.id, 'enable');
      expect(await verifyKey(ctx(), created.key)).toMatchObject({ valid: true, code: 'VALID' });
    });

    it('reports REVOKED before any scope or address check', async () => {
      const created = await createKey(ctx(), { scopes: ['a:b'], ipAllowlist: ['10.0.0.0/8'] });
      await changeKey(ctx(), created.id, 'revoke', {});
      expect((await verifyKey(ctx(), created.key, { scopes: ['x:y'], ip: '192.0.2.1' })).code).toBe('REVOKED');
    });
  });

  describe('INSUFFICIENT_SCOPE', () => {
    it('answers INSUFFICIENT_SCOPE when a scope asked for is missing', async () => {
      const created = await createKey(ctx(), { scopes: ['orders:read'] });
      expect(await verifyKey(ctx(), created.key, { scopes: ['orders:write'] })).toMatchObject({ valid: false, code: 'INSUFFICIENT_SCOPE', keyId: created.id });
      expect((await verifyKey(ctx(), created.key, { scopes: ['orders:read', 'billing:read'] })).code).toBe('INSUFFICIENT_SCOPE');
    });

    it('answers INSUFFICIENT_SCOPE for a key with no scopes', async () => {
      const created = await createKey(ctx());
      expect((await verifyKey(ctx(), created.key, { scopes: ['orders:read'] })).code).toBe('INSUFFICIENT_SCOPE');
    });

    it('does not let orders:* cover another family or the wildcard itself grow', async () => {
      const created = await createKey(ctx(), { scopes: ['orders:*'] });
      expect((await verifyKey(ctx(), created.key, { scopes: ['billing:read'] })).code).toBe('INSUFFICIENT_SCOPE');
      expect((await verifyKey(ctx(), created.key, { scopes: ['ordersx:read'] })).code).toBe('INSUFFICIENT_SCOPE');
      expect((await verifyKey(ctx(), created.key, { scopes: ['*'] })).code).toBe('INSUFFICIENT_SCOPE');
      const narrow = await createKey(ctx(), { scopes: ['orders:read'] });
      expect((await verifyKey(ctx(), narrow.key, { scopes: ['orders:*'] })).code).toBe('INSUFFICIENT_SCOPE');
    });
  });

  describe('IP_NOT_ALLOWED', () => {
    it('checks an IPv4 CIDR allowlist', async () => {
      const created = await createKey(ctx(), { ipAllowlist: ['10.0.0.0/8', '203.0.113.7'] });
      expect((await verifyKey(ctx(), created.key, { ip: '10.1.2.3' })).code).toBe('VALID');
      expect((await verifyKey(ctx(), created.key, { ip: '203.0.113.7' })).code).toBe('VALID');
      expect((await verifyKey(ctx(), created.key, { ip: '::ffff:10.9.9.9' })).code).toBe('VALID');
      expect(await verifyKey(ctx(), created.key, { ip: '11.0.0.1' })).toMatchObject({ valid: false, code: 'IP_NOT_ALLOWED', keyId: created.id });
      expect((await verifyKey(ctx(), created.key, { ip: '203.0.113.8' })).code).toBe('IP_NOT_ALLOWED');
      expect((await verifyKey(ctx(), created.key, { ip: '2001:db8::1' })).code).toBe('IP_NOT_ALLOWED');
    });

    it('checks an IPv6 CIDR allowlist', async () => {
      const created = await createKey(ctx(), { ipAllowlist: ['2001:db8::/32'] });
      expect((await verifyKey(ctx(), created.key, { ip: '2001:db8:1::5' })).code).toBe('VALID');
      expect((await verifyKey(ctx(), created.key, { ip: '2001:DB8:ffff::1' })).code).toBe('VALID');
      expect((await verifyKey(ctx(), created.key, { ip: '2001:db9::1' })).code).toBe('IP_NOT_ALLOWED');
      expect((await verifyKey(ctx(), created.key, { ip: '10.0.0.1' })).code).toBe('IP_NOT_ALLOWED');
    });

    it("uses the caller's address when the body names no ip", async () => {
      const local = await createKey(ctx(), { ipAllowlist: ['127.0.0.0/8'] });
      expect((await verifyKey(ctx(), local.key)).code).toBe('VALID');
      const remote = await createKey(ctx(), { ipAllowlist: ['10.0.0.0/8'] });
      expect((await verifyKey(ctx(), remote.key)).code).toBe('IP_NOT_ALLOWED');
    });

    it('answers IP_NOT_ALLOWED before a missing scope', async () => {
      const created = await createKey(ctx(), { ipAllowlist: ['10.0.0.0/8'], scopes: ['a:b'] });
      expect((await verifyKey(ctx(), created.key, { ip: '192.0.2.1', scopes: ['c:d'] })).code).toBe('IP_NOT_ALLOWED');
    });
  });

  describe('RATE_LIMITED', () => {
    it('limits the third call in a 2-per-minute window and allows again after the window', async () => {
      const created = await createKey(ctx(), { rateLimit: { limit: 2, window: '1m' } });
      const first = await verifyKey(ctx(), created.key);
      const second = await verifyKey(ctx(), created.key);
      const third = await verifyKey(ctx(), created.key);
      expect(first).toMatchObject({ valid: true, code: 'VALID', ratelimit: { limit: 2, remaining: 1 } });
      expect(second).toMatchObject({ valid: true, code: 'VALID', ratelimit: { limit: 2, remaining: 0 } });
      expect(third).toMatchObject({ valid: false, code: 'RATE_LIMITED', keyId: created.id, ratelimit: { limit: 2, remaining: 0 } });
      expect(Date.parse(third.ratelimit!.reset)).toBeGreaterThan(ctx().clock.now());
      ctx().clock.set(third.ratelimit!.reset);
      expect(await verifyKey(ctx(), created.key)).toMatchObject({ valid: true, code: 'VALID', ratelimit: { remaining: 1 } });
    });

    it('stays limited until the window has passed', async () => {
      const created = await createKey(ctx(), { rateLimit: { limit: 2, window: '1m' } });
      await verifyKey(ctx(), created.key);
      await verifyKey(ctx(), created.key);
      const limited = await verifyKey(ctx(), created.key);
      expect(limited.code).toBe('RATE_LIMITED');
      ctx().clock.set(Date.parse(limited.ratelimit!.reset) - 1);
      expect((await verifyKey(ctx(), created.key)).code).toBe('RATE_LIMITED');
      ctx().clock.advance(MINUTE);
      expect((await verifyKey(ctx(), created.key)).code).toBe('VALID');
    });

    it('counts each key on its own', async () => {
      const a = await createKey(ctx(), { rateLimit: { limit: 1, window: '1h' } });
      const b = await createKey(ctx(), { rateLimit: { limit: 1, window: '1h' } });
      expect((await verifyKey(ctx(), a.key)).code).toBe('VALID');
      expect((await verifyKey(ctx(), a.key)).code).toBe('RATE_LIMITED');
      expect((await verifyKey(ctx(), b.key)).code).toBe('VALID');
    });
  });

  describe('errors', () => {
    it('refuses a body without key, or with a key that is not a string', async () => {
      for (const body of [{}, { key: 5 }, { key: null }, { key: ['a'] }]) {
        const res = await ctx().request({ method: 'POST', url: '/v1/keys/verify', body });
        expect(expectProblem(res, 400, 'ERR_INVALID_REQUEST').detail).toContain('key');
      }
    });

    it('refuses unknown fields and bad scopes', async () => {
      const created = await createKey(ctx());
      const unknown = await ctx().request({ method: 'POST', url: '/v1/keys/verify', body: { key: created.key, tenant: 'x' } });
      expect(expectProblem(unknown, 400, 'ERR_INVALID_REQUEST').detail).toContain('tenant');
      const scopes = await ctx().request({ method: 'POST', url: '/v1/keys/verify', body: { key: created.key, scopes: 'orders:read' } });
      expect(expectProblem(scopes, 400, 'ERR_INVALID_REQUEST').detail).toContain('scopes');
    });

    it('refuses an ip field that is not an address-like string', async () => {
      const created = await createKey(ctx());
      const res = await ctx().request({ method: 'POST', url: '/v1/keys/verify', body: { key: created.key, ip: 'x'.repeat(65) } });
      expectProblem(res, 400, 'ERR_INVALID_REQUEST');
    });
  });

  describe('security', () => {
    it('answers 401 without a token, and never names the presented key', async () => {
      const created = await createKey(ctx());
      const res = await ctx().request({ method: 'POST', url: '/v1/keys/verify', token: null, body: { key: created.key } });
      expectProblem(res, 401, 'ERR_UNAUTHENTICATED', 'unauthenticated');
      expect(res.body).not.toContain(created.key);
    });

    it('answers 403 to a token without keys:verify', async () => {
      const token = await ctx().token(['keys:read', 'keys:create']);
      const created = await createKey(ctx());
      const res = await ctx().request({ method: 'POST', url: '/v1/keys/verify', token, body: { key: created.key } });
      expect(expectProblem(res, 403, 'ERR_FORBIDDEN', 'forbidden').detail).toContain('keys:verify');
      expect(res.body).not.toContain(created.key);
    });

    it('refuses a service key as the bearer even when it verifies', async () => {
      const created = await createKey(ctx(), { scopes: ['keys:verify'] });
      const res = await ctx().request({ method: 'POST', url: '/v1/keys/verify', token: created.key, body: { key: created.key } });
      expectProblem(res, 403, 'ERR_FORBIDDEN', 'forbidden');
      expect(res.body).not.toContain(created.key);
    });
  });
});
