import { describe, expect, it } from 'vitest';
import type { KeyPageWire } from '../../src/contract/index.js';
import { describeEachDialect } from '../support/databases.js';
import {
  DAY,
  HOUR,
  allPropertyNames,
  changeKey,
  createKey,
  expectProblem,
  problemFields,
  unique,
  useContext,
  verifyKey,
} from './helpers.js';

describeEachDialect('GET /v1/keys', (dialect) => {
  const ctx = useContext(dialect);

  const list = async (query: string, token?: string): Promise<KeyPageWire> => {
    const res = await ctx().request({ method: 'GET', url: `/v1/keys?${query}`, ...(token ? { token } : {}) });
    expect(res.statusCode, res.body).toBe(200);
    return res.json() as KeyPageWire;
  };
  const ids = (page: KeyPageWire) => page.data.map((key) => key.id);

  describe('filters', () => {
    it('lists service keys newest first, never tokens, keys or hashes', async () => {
      const owner = unique();
      const a = await createKey(ctx(), { owner });
      ctx().clock.advance(1000);
      const b = await createKey(ctx(), { owner });
      await ctx().token(['keys:read']);
      const page = await list(`owner=${owner}`);
      expect(ids(page)).toEqual([b.id, a.id]);
      expect(page.nextCursor).toBeNull();
      const everything = await ctx().request({ method: 'GET', url: '/v1/keys?limit=200' });
      const data = everything.json().data as Array<{ kind: string }>;
      expect(data.every((key) => key.kind === 'service')).toBe(true);
      expect(everything.body).not.toContain(a.key);
      expect(everything.body).not.toContain(ctx().rootToken);
      expect(allPropertyNames(everything.json()).filter((name) => /hash|secret|^key$/i.test(name))).toEqual([]);
    });

    it('filters by owner', async () => {
      const owner = unique();
      const mine = await createKey(ctx(), { owner });
      await createKey(ctx(), { owner: `${owner}-other` });
      expect(ids(await list(`owner=${owner}`))).toEqual([mine.id]);
      expect(ids(await list(`owner=${unique()}`))).toEqual([]);
    });

    it('filters by env', async () => {
      const owner = unique();
      const live = await createKey(ctx(), { owner, env: 'live' });
      const test = await createKey(ctx(), { owner, env: 'test' });
      expect(ids(await list(`owner=${owner}&env=live`))).toEqual([live.id]);
      expect(ids(await list(`owner=${owner}&env=test`))).toEqual([test.id]);
    });

    it('filters by one label, and by several labels together', async () => {
      const owner = unique();
      const both = await createKey(ctx(), { owner, labels: { team: 'pay', tier: 'gold' } });
      const teamOnly = await createKey(ctx(), { owner, labels: { team: 'pay', tier: 'silver' } });
      await createKey(ctx(), { owner, labels: { team: 'ops' } });
      expect(ids(await list(`owner=${owner}&label=team=pay`)).sort()).toEqual([both.id, teamOnly.id].sort());
      expect(ids(await list(`owner=${owner}&label=team=pay&label=tier=gold`))).toEqual([both.id]);
      expect(ids(await list(`owner=${owner}&label=team=nobody`))).toEqual([]);
    });

    it('matches a label value that itself contains "="', async () => {
      const owner = unique();
      const created = await createKey(ctx(), { owner, labels: { expr: 'a=b' } });
      expect(ids(await list(`owner=${owner}&label=${encodeURIComponent('expr=a=b')}`))).toEqual([created.id]);
    });

    it('filters by every status', async () => {
      const owner = unique();
      const active = await createKey(ctx(), { owner });
      const revoked = await createKey(ctx(), { owner });
      await changeKey(ctx(), revoked.id, 'revoke', { reason: 'x' });
      const disabled = await createKey(ctx(), { owner });
      await changeKey(ctx(), disabled.id, 'disable');
      const superseded = await createKey(ctx(), { owner });
      const rotated = await ctx().request({ method: 'POST', url: `/v1/keys/${superseded.id}/rotate`, body: { overlap: '1h' } });
      const successor = rotated.json().id as string;
      const expired = await createKey(ctx(), { owner, ttl: '1h' });
      ctx().clock.advance(HOUR);
      expect(ids(await list(`owner=${owner}&status=active`)).sort()).toEqual([active.id, successor].sort());
      expect(ids(await list(`owner=${owner}&status=revoked`))).toEqual([revoked.id]);
      expect(ids(await list(`owner=${owner}&status=disabled`))).toEqual([disabled.id]);
      expect(ids(await list(`owner=${owner}&status=superseded`))).toEqual([superseded.id]);
      expect(ids(await list(`owner=${owner}&status=expired`))).toEqual([expired.id]);
      const all = await list(`owner=${owner}`);
      expect(all.data).toHaveLength(6);
      expect(Object.fromEntries(all.data.map((key) => [key.id, key.status]))).toEqual({
        [active.id]: 'active',
        [revoked.id]: 'revoked',
        [disabled.id]: 'disabled',
        [superseded.id]: 'superseded',
        [successor]: 'active',
        [expired.id]: 'expired',
      });
    });

    it('finds keys expiring within a window, leaving out revoked and expired ones', async () => {
      const owner = unique();
      const oneDay = await createKey(ctx(), { owner, ttl: '1d' });
      const fiveDays = await createKey(ctx(), { owner, ttl: '5d' });
      await createKey(ctx(), { owner, ttl: '10d' });
      const revoked = await createKey(ctx(), { owner, ttl: '2d' });
      await changeKey(ctx(), revoked.id, 'revoke', {});
      const gone = await createKey(ctx(), { owner, ttl: '1h' });
      ctx().clock.advance(HOUR);
      expect(ids(await list(`owner=${owner}&status=expired`))).toEqual([gone.id]);
      expect(ids(await list(`owner=${owner}&expiringWithin=7d`)).sort()).toEqual([oneDay.id, fiveDays.id].sort());
      expect(ids(await list(`owner=${owner}&expiringWithin=2d`))).toEqual([oneDay.id]);
      expect(ids(await list(`owner=${owner}&expiringWithin=1h`))).toEqual([]);
    });

    it('accepts an enormous expiringWithin without failing', async () => {
      const owner = unique();
      const created = await createKey(ctx(), { owner });
      expect(ids(await list(`owner=${owner}&expiringWithin=999999999d`))).toEqual([created.id]);
    });
  });

  describe('unusedFor', () => {
    // Moves the shared clock by about a month; later suites create their own keys.
    const local = ctx;

    it('finds keys not verified for a while, counting never-used keys from their creation', async () => {
      const owner = unique();
      const used = await createKey(local(), { owner, ttl: '60d' });
      const neverUsed = await createKey(local(), { owner, ttl: '60d' });
      local().clock.advance(20 * DAY);
      expect((await verifyKey(local(), used.key)).code).toBe('VALID');
      local().clock.advance(5 * DAY);
      const young = await createKey(local(), { owner, ttl: '60d' });
      local().clock.advance(6 * DAY); // now: day 31; used last on day 20; young made on day 25
      const page = await local().request({ method: 'GET', url: `/v1/keys?owner=${owner}&unusedFor=30d` });
      expect(ids(page.json())).toEqual([neverUsed.id]);
      const tenDays = await local().request({ method: 'GET', url: `/v1/keys?owner=${owner}&unusedFor=10d` });
      expect(ids(tenDays.json()).sort()).toEqual([used.id, neverUsed.id].sort());
      const oneDay = await local().request({ method: 'GET', url: `/v1/keys?owner=${owner}&unusedFor=1d` });
      expect(ids(oneDay.json()).sort()).toEqual([used.id, neverUsed.id, young.id].sort());
      expect((await local().request({ method: 'GET', url: `/v1/keys/${used.id}` })).json().lastUsedAt).toBe(
        new Date(Date.parse(used.createdAt) + 20 * DAY).toISOString(),
      );
    });

    it('does not count a failed verification as a use', async () => {
      const owner = unique();
      const created = await createKey(local(), { owner, scopes: ['a:b'] });
      local().clock.advance(2 * DAY);
      expect((await verifyKey(local(), created.key, { scopes: ['x:y'] })).code).toBe('INSUFFICIENT_SCOPE');
      const page = await local().request({ method: 'GET', url: `/v1/keys?owner=${owner}&unusedFor=1d` });
      expect(ids(page.json())).toEqual([created.id]);
    });
  });

  describe('pagination', () => {
    const walk = async (query: string): Promise<{ pages: string[][]; cursors: Array<string | null> }> => {
      const pages: string[][] = [];
      const cursors: Array<string | null> = [];
      let cursor: string | null = null;
      do {
        const page: KeyPageWire = await list(`${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
        pages.push(ids(page));
        cursors.push(page.nextCursor);
        cursor = page.nextCursor;
      } while (cursor !== null && pages.length < 10);
      return { pages, cursors };
    };

    it('pages through 5 keys two at a time without duplicates, ending with a null cursor', async () => {
      const owner = unique();
      const created: string[] = [];
      for (let i = 0; i < 5; i += 1) {
        created.push((await createKey(ctx(), { owner })).id);
        ctx().clock.advance(1000);
      }
      const { pages, cursors } = await walk(`owner=${owner}&limit=2`);
      expect(pages.map((page) => page.length)).toEqual([2, 2, 1]);
      expect(cursors[0]).toEqual(expect.any(String));
      expect(cursors[1]).toEqual(expect.any(String));
      expect(cursors[2]).toBeNull();
      expect(pages.flat()).toEqual([...created].reverse());
    });

    it('pages without duplicates or gaps when keys share a creation time', async () => {
      const owner = unique();
      const created = new Set<string>();
      for (let i = 0; i < 5; i += 1) created.add((await createKey(ctx(), { owner })).id);
      const { pages } = await walk(`owner=${owner}&limit=2`);
      const seen = pages.flat();
      expect(seen).toHaveLength(5);
      expect(new Set(seen)).toEqual(created);
    });

    it('ends with a null cursor when the last page is exactly full', async () => {
      const owner = unique();
      for (let i = 0; i < 4; i += 1) await createKey(ctx(), { owner });
      const { pages, cursors } = await walk(`owner=${owner}&limit=2`);
      expect(pages.map((page) => page.length)).toEqual([2, 2]);
      expect(cursors[1]).toBeNull();
    });

    it('refuses a cursor this server did not issue', async () => {
      const crafted = Buffer.from(JSON.stringify(['\u0000', 'x'])).toString('base64url');
      for (const cursor of ['garbage', 'bm90IGpzb24', Buffer.from('[1,2]').toString('base64url'), crafted]) {
        const res = await ctx().request({ method: 'GET', url: `/v1/keys?cursor=${cursor}` });
        const problem = expectProblem(res, 400, 'ERR_INVALID_REQUEST', 'invalid_request');
        expect(problem.detail).toContain('cursor');
      }
    });
  });

  describe('errors', () => {
    it.each([
      ['limit=0', 'limit'],
      ['limit=abc', 'limit'],
      ['limit=201', 'limit'],
      ['limit=-1', 'limit'],
      ['limit=1.5', 'limit'],
      ['status=deleted', 'status'],
      ['env=prod', 'env'],
      ['expiringWithin=abc', 'expiringWithin'],
      ['expiringWithin=-7d', 'expiringWithin'],
      ['unusedFor=0d', 'unusedFor'],
      ['label=novalue', 'label'],
      ['label=Bad=x', 'label'],
      ['colour=red', 'colour'],
      [`owner=${'o'.repeat(201)}`, 'owner'],
      ['owner=a%0Ab', 'owner'],
    ])('refuses ?%s with a 400 naming %s', async (query, field) => {
      const res = await ctx().request({ method: 'GET', url: `/v1/keys?${query}` });
      const problem = expectProblem(res, 400, undefined, 'invalid_request');
      expect(`${problem.detail} ${problemFields(problem).join(' ')}`).toContain(field);
    });
  });

  describe('security', () => {
    it('answers 401 without a token and 403 without keys:read', async () => {
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/keys', token: null }), 401, 'ERR_UNAUTHENTICATED', 'unauthenticated');
      const token = await ctx().token(['keys:create', 'keys:verify']);
      expect(expectProblem(await ctx().request({ method: 'GET', url: '/v1/keys', token }), 403, 'ERR_FORBIDDEN', 'forbidden').detail).toContain('keys:read');
    });

    it('lists with a token that holds keys:read', async () => {
      const owner = unique();
      const created = await createKey(ctx(), { owner });
      const token = await ctx().token(['keys:read']);
      expect(ids(await list(`owner=${owner}`, token))).toEqual([created.id]);
    });
  });
});
