import { describe, expect, it } from 'vitest';
import type { KeyUsageWire } from '../../src/contract/index.js';
import { describeEachDialect } from '../support/databases.js';
import { HOUR, MINUTE, changeKey, createKey, expectProblem, iso, unknownKey, unknownKeyId, useContext, verifyKey } from './helpers.js';

describeEachDialect('GET /v1/keys/:id/usage', (dialect) => {
  const ctx = useContext(dialect);

  const usage = async (id: string, query = '', token?: string): Promise<KeyUsageWire> => {
    const res = await ctx().request({ method: 'GET', url: `/v1/keys/${id}/usage${query}`, ...(token ? { token } : {}) });
    expect(res.statusCode, res.body).toBe(200);
    return res.json() as KeyUsageWire;
  };

  /** Starts the clock on a fresh minute so per-minute buckets are predictable. */
  const toNextMinute = () => {
    const now = ctx().clock.now();
    ctx().clock.set(now - (now % MINUTE) + MINUTE);
  };

  describe('happy path', () => {
    it('counts verifications per minute by outcome, with the last use', async () => {
      const created = await createKey(ctx(), { scopes: ['orders:read'], ipAllowlist: ['10.0.0.0/8', '198.51.100.0/24'] });
      toNextMinute();
      const first = ctx().clock.now();
      expect((await verifyKey(ctx(), created.key, { ip: '10.0.0.1' })).code).toBe('VALID');
      expect((await verifyKey(ctx(), created.key, { ip: '10.0.0.2', scopes: ['orders:read'] })).code).toBe('VALID');
      expect((await verifyKey(ctx(), created.key, { ip: '10.0.0.3', scopes: ['orders:write'] })).code).toBe('INSUFFICIENT_SCOPE');
      expect((await verifyKey(ctx(), created.key, { ip: '192.0.2.9' })).code).toBe('IP_NOT_ALLOWED');
      ctx().clock.advance(MINUTE + 5_000);
      const second = ctx().clock.now();
      expect((await verifyKey(ctx(), created.key, { ip: '198.51.100.7', userAgent: 'gateway/1.0' })).code).toBe('VALID');
      await changeKey(ctx(), created.id, 'disable');
      expect((await verifyKey(ctx(), created.key, { ip: '10.0.0.4', userAgent: 'late/2.0' })).code).toBe('DISABLED');

      const report = await usage(created.id);
      expect(report.keyId).toBe(created.id);
      expect(report.totals).toEqual({ VALID: 3, INSUFFICIENT_SCOPE: 1, IP_NOT_ALLOWED: 1, DISABLED: 1 });
      expect(report.minutes).toEqual([
        { minute: iso(first), counts: { VALID: 2, INSUFFICIENT_SCOPE: 1, IP_NOT_ALLOWED: 1 }, total: 4 },
        { minute: iso(second - (second % MINUTE)), counts: { VALID: 1, DISABLED: 1 }, total: 2 },
      ]);
      // The last *successful* use: a refused verification is not a use.
      expect(report.lastUsedAt).toBe(iso(second));
      expect(report.lastUsedIp).toBe('198.51.100.7');
      expect(report.lastUsedUserAgent).toBe('gateway/1.0');
      expect((await ctx().request({ method: 'GET', url: `/v1/keys/${created.id}` })).json().lastUsedAt).toBe(iso(second));
    });

    it("falls back to the caller's address and User-Agent header", async () => {
      const created = await createKey(ctx());
      await verifyKey(ctx(), created.key, {}, { headers: { 'user-agent': 'curl/8.5.0' } });
      const report = await usage(created.id);
      expect(report.lastUsedIp).toBe('127.0.0.1');
      expect(report.lastUsedUserAgent).toBe('curl/8.5.0');
      expect(report.lastUsedAt).toBe(iso(ctx().clock.now()));
    });

    it('reports nothing for a key never verified', async () => {
      const created = await createKey(ctx());
      const report = await usage(created.id);
      expect(report).toMatchObject({ keyId: created.id, totals: {}, minutes: [], lastUsedAt: null, lastUsedIp: null, lastUsedUserAgent: null });
    });

    it('counts RATE_LIMITED and EXPIRED outcomes too', async () => {
      const created = await createKey(ctx(), { ttl: '1h', rateLimit: { limit: 1, window: '1h' } });
      await verifyKey(ctx(), created.key);
      await verifyKey(ctx(), created.key);
      ctx().clock.advance(HOUR);
      await verifyKey(ctx(), created.key);
      expect((await usage(created.id)).totals).toEqual({ VALID: 1, RATE_LIMITED: 1, EXPIRED: 1 });
    });

    it('does not attribute MALFORMED or NOT_FOUND verifications to any key', async () => {
      const created = await createKey(ctx());
      await verifyKey(ctx(), created.key.slice(0, -1) + (created.key.endsWith('A') ? 'B' : 'A'));
      await verifyKey(ctx(), unknownKey());
      expect((await usage(created.id)).totals).toEqual({});
    });

    it('limits the report to the since window', async () => {
      const created = await createKey(ctx());
      toNextMinute();
      await verifyKey(ctx(), created.key);
      ctx().clock.advance(2 * HOUR);
      await verifyKey(ctx(), created.key);
      expect((await usage(created.id, '?since=1h')).totals).toEqual({ VALID: 1 });
      expect((await usage(created.id, '?since=3h')).totals).toEqual({ VALID: 2 });
      expect((await usage(created.id)).totals).toEqual({ VALID: 2 });
      expect((await usage(created.id, '?since=999999999d')).totals).toEqual({ VALID: 2 });
    });

    it('counts in memory: verification itself writes no usage row', async () => {
      const created = await createKey(ctx());
      await verifyKey(ctx(), created.key);
      const rows = await ctx().store.db.selectFrom('key_usage').selectAll().where('key_id', '=', created.id).execute();
      expect(rows).toEqual([]);
      expect((await usage(created.id)).totals).toEqual({ VALID: 1 });
    });
  });

  describe('errors', () => {
    it('answers 404 for an unknown id and 400 for a malformed one', async () => {
      expectProblem(await ctx().request({ method: 'GET', url: `/v1/keys/${unknownKeyId()}/usage` }), 404, 'ERR_KEY_NOT_FOUND', 'not_found');
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/keys/key_x/usage' }), 400, 'ERR_INVALID_REQUEST');
    });

    it.each(['abc', '0m', '-1h', '24', '1y'])('refuses since=%s with a 400 naming since', async (since) => {
      const created = await createKey(ctx());
      const problem = expectProblem(await ctx().request({ method: 'GET', url: `/v1/keys/${created.id}/usage?since=${since}` }), 400, undefined, 'invalid_request');
      expect(problem.detail).toContain('since');
    });

    it('refuses unknown query parameters', async () => {
      const created = await createKey(ctx());
      expectProblem(await ctx().request({ method: 'GET', url: `/v1/keys/${created.id}/usage?outcome=VALID` }), 400, 'ERR_INVALID_REQUEST');
    });
  });

  describe('security', () => {
    it('answers 401 without a token and 403 without keys:read', async () => {
      const created = await createKey(ctx());
      expectProblem(await ctx().request({ method: 'GET', url: `/v1/keys/${created.id}/usage`, token: null }), 401, 'ERR_UNAUTHENTICATED');
      const token = await ctx().token(['keys:verify']);
      expectProblem(await ctx().request({ method: 'GET', url: `/v1/keys/${created.id}/usage`, token }), 403, 'ERR_FORBIDDEN', 'forbidden');
    });

    it('reads usage with a keys:read token', async () => {
      const created = await createKey(ctx());
      await verifyKey(ctx(), created.key);
      const token = await ctx().token(['keys:read']);
      expect((await usage(created.id, '', token)).totals).toEqual({ VALID: 1 });
    });
  });
});
