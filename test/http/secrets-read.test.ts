/** Reading secrets: values by stage or version, metadata and versions without values, listing, and who read what. */
import { describe, expect, it } from 'vitest';
import type { PutSecretResultWire, SecretPageWire, SecretReadersWire, SecretValueWire, SecretVersionsWire } from '../../src/contract/index.js';
import { describeEachDialect } from '../support/databases.js';
import { HOUR, MINUTE, auditHead, expectProblem, idOf, iso, problemFields, unique, useContext } from './helpers.js';

describeEachDialect('reading secrets', (dialect) => {
  const ctx = useContext(dialect);

  const get = (url: string, token?: string | null) => ctx().request({ method: 'GET', url, ...(token !== undefined ? { token } : {}) });
  const put = async (path: string, body: Record<string, unknown>): Promise<PutSecretResultWire> => {
    const res = await ctx().request({ method: 'PUT', url: `/v1/secrets/${path}`, body });
    expect(res.statusCode, res.body).toBeLessThan(300);
    return res.json() as PutSecretResultWire;
  };
  const readValue = async (path: string, query = '', token?: string): Promise<SecretValueWire> => {
    const res = await get(`/v1/secrets/${path}${query}`, token);
    expect(res.statusCode, res.body).toBe(200);
    return res.json() as SecretValueWire;
  };
  /** A secret with versions 1..3: current 3, previous 2. */
  const threeVersions = async (prefix = 'read'): Promise<string> => {
    const path = `${unique(prefix)}/svc/key`;
    for (const value of ['value-one', 'value-two', 'value-three']) await put(path, { value });
    return path;
  };

  describe('GET /v1/secrets/{path}', () => {
    it('reads current by default, and any stage or version on request', async () => {
      const path = await threeVersions();
      expect(await readValue(path)).toMatchObject({ path, version: 3, stages: ['current'], value: 'value-three', createdAt: iso(ctx().clock.now()) });
      expect(await readValue(path, '?stage=current')).toMatchObject({ version: 3 });
      expect(await readValue(path, '?stage=previous')).toMatchObject({ version: 2, stages: ['previous'], value: 'value-two' });
      expect(await readValue(path, '?version=1')).toMatchObject({ version: 1, stages: [], value: 'value-one' });
    });

    it('answers only the whitelisted fields, never an envelope field', async () => {
      const path = await threeVersions();
      const body = await readValue(path);
      expect(Object.keys(body).sort()).toEqual(['createdAt', 'id', 'path', 'stages', 'value', 'version']);
    });

    it('sees a new version at once after a put (no stale cache)', async () => {
      const path = await threeVersions();
      await readValue(path);
      await put(path, { value: 'value-four' });
      expect(await readValue(path)).toMatchObject({ version: 4, value: 'value-four' });
      expect(await readValue(path, '?stage=previous')).toMatchObject({ version: 3, value: 'value-three' });
    });

    it('answers 404 ERR_SECRET_NOT_FOUND for an unknown path and ERR_SECRET_VERSION_NOT_FOUND for a missing version or stage', async () => {
      const path = await threeVersions();
      expectProblem(await get(`/v1/secrets/${unique('nobody')}/here`), 404, 'ERR_SECRET_NOT_FOUND', 'not_found');
      expectProblem(await get(`/v1/secrets/${path}?version=9`), 404, 'ERR_SECRET_VERSION_NOT_FOUND');
      expectProblem(await get(`/v1/secrets/${path}?stage=pending`), 404, 'ERR_SECRET_VERSION_NOT_FOUND');
      expectProblem(await get(`/v1/secrets/${path}?stage=blue`), 404, 'ERR_SECRET_VERSION_NOT_FOUND');
    });

    it('answers 404, never 500, for a version number past any database integer', async () => {
      const path = await threeVersions();
      expectProblem(await get(`/v1/secrets/${path}?version=99999999999`), 404, 'ERR_SECRET_VERSION_NOT_FOUND');
      expectProblem(await get(`/v1/secrets/${path}?version=2147483648`), 404, 'ERR_SECRET_VERSION_NOT_FOUND');
    });

    it.each([
      ['?version=0', 'version'],
      ['?version=-1', 'version'],
      ['?version=two', 'version'],
      ['?stage=Current', 'stage'],
      ['?colour=red', 'colour'],
    ])('answers 400 for the query %s', async (query, field) => {
      const path = await threeVersions();
      const head = await auditHead(ctx());
      const problem = expectProblem(await get(`/v1/secrets/${path}${query}`), 400, 'ERR_INVALID_REQUEST');
      expect(problemFields(problem)).toContain(field);
      expect(await auditHead(ctx())).toBe(head);
    });

    it('answers 400 ERR_SECRET_PATH_INVALID for an invalid path', async () => {
      expectProblem(await get('/v1/secrets/Payments/key'), 400, 'ERR_SECRET_PATH_INVALID');
      expectProblem(await get('/v1/secrets/a/promote'), 400, 'ERR_SECRET_PATH_INVALID');
      expectProblem(await get('/v1/secrets/versions'), 400, 'ERR_SECRET_PATH_INVALID');
    });

    it('writes no audit event for a read', async () => {
      const path = await threeVersions();
      const head = await auditHead(ctx());
      await readValue(path);
      expect(await auditHead(ctx())).toBe(head);
    });
  });

  describe('GET /v1/secrets/{path}/versions', () => {
    it('lists metadata and every version, newest first, with no value anywhere', async () => {
      const path = await threeVersions();
      const res = await get(`/v1/secrets/${path}/versions`);
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json() as SecretVersionsWire;
      expect(body.secret).toMatchObject({ path, currentVersion: 3, stages: { current: 3, previous: 2 } });
      expect(body.versions.map((v) => v.version)).toEqual([3, 2, 1]);
      expect(body.versions[0]).toEqual({ version: 3, stages: ['current'], createdAt: expect.any(String), createdBy: idOf(ctx().rootToken), destroyedAt: null, kekVersion: expect.any(Number), vendorId: null });
      expect(res.body).not.toContain('value-');
    });

    it('answers 404 for an unknown secret and 401 without a token', async () => {
      expectProblem(await get(`/v1/secrets/${unique('none')}/x/versions`), 404, 'ERR_SECRET_NOT_FOUND');
      expectProblem(await get(`/v1/secrets/${unique('none')}/x/versions`, null), 401);
    });
  });

  describe('GET /v1/secrets', () => {
    it('lists metadata under a prefix in path order, without values, paging with a cursor', async () => {
      const prefix = unique('list');
      for (const name of ['c', 'a', 'b']) await put(`${prefix}/${name}`, { value: `list-value-${name}` });
      const first = await get(`/v1/secrets?prefix=${prefix}/&limit=2`);
      expect(first.statusCode, first.body).toBe(200);
      const page = first.json() as SecretPageWire;
      expect(page.data.map((s) => s.path)).toEqual([`${prefix}/a`, `${prefix}/b`]);
      expect(page.nextCursor).toEqual(expect.any(String));
      const second = (await get(`/v1/secrets?prefix=${prefix}/&limit=2&cursor=${page.nextCursor}`)).json() as SecretPageWire;
      expect(second.data.map((s) => s.path)).toEqual([`${prefix}/c`]);
      expect(second.nextCursor).toBeNull();
      expect(first.body).not.toContain('list-value');
    });

    it('treats % and _ in a prefix as themselves, not as wildcards', async () => {
      const prefix = unique('like');
      await put(`${prefix}/a_b`, { value: 'x' });
      await put(`${prefix}/axb`, { value: 'x' });
      const page = (await get(`/v1/secrets?prefix=${prefix}/a_`)).json() as SecretPageWire;
      expect(page.data.map((s) => s.path)).toEqual([`${prefix}/a_b`]);
    });

    it('shows a path-limited token only the paths it may read', async () => {
      const prefix = unique('scoped');
      await put(`${prefix}/open/one`, { value: 'x' });
      await put(`${prefix}/closed/two`, { value: 'x' });
      const token = await ctx().token([`secrets:read:${prefix}/open/*`]);
      const page = (await get(`/v1/secrets?prefix=${prefix}/`, token)).json() as SecretPageWire;
      expect(page.data.map((s) => s.path)).toEqual([`${prefix}/open/one`]);
    });

    it('fills every page of a path-limited token with paths it may read, however many it may not', async () => {
      const prefix = unique('paged');
      for (const name of ['a1', 'a2', 'a3', 'a4', 'a5']) await put(`${prefix}/hidden/${name}`, { value: 'x' });
      for (const name of ['b1', 'b2', 'b3']) await put(`${prefix}/shown/${name}`, { value: 'x' });
      await put(`${prefix}/single`, { value: 'x' });
      const token = await ctx().token([`secrets:read:${prefix}/shown/*`, `secrets:read:${prefix}/single`]);
      const first = (await get(`/v1/secrets?prefix=${prefix}/&limit=2`, token)).json() as SecretPageWire;
      expect(first.data.map((s) => s.path)).toEqual([`${prefix}/shown/b1`, `${prefix}/shown/b2`]);
      const second = (await get(`/v1/secrets?prefix=${prefix}/&limit=2&cursor=${first.nextCursor}`, token)).json() as SecretPageWire;
      expect(second.data.map((s) => s.path)).toEqual([`${prefix}/shown/b3`, `${prefix}/single`]);
      const none = (await get(`/v1/secrets?prefix=${prefix}/`, await ctx().token(['secrets:write']))).statusCode;
      expect(none).toBe(403);
    });

    it('answers 403 to a token with no secrets:read scope at all, and 400 for a bad cursor or prefix', async () => {
      const token = await ctx().token(['secrets:write']);
      expectProblem(await get('/v1/secrets', token), 403, 'ERR_FORBIDDEN');
      expectProblem(await get('/v1/secrets?prefix=Upper'), 400, 'ERR_INVALID_REQUEST');
      expectProblem(await get('/v1/secrets?limit=0'), 400, 'ERR_INVALID_REQUEST');
      expectProblem(await get('/v1/secrets?cursor='), 400, 'ERR_INVALID_REQUEST');
    });
  });

  describe('GET /v1/secrets/{path}/readers', () => {
    it('counts reads per version and per reader, by stage or version number', async () => {
      const path = await threeVersions('readers');
      const alice = await ctx().token([`secrets:read`]);
      const bob = await ctx().token([`secrets:read`]);
      for (let i = 0; i < 3; i++) await readValue(path, '', alice);
      await readValue(path, '', bob);
      await readValue(path, '?stage=previous', bob);
      await readValue(path, '?version=2', bob);
      await readValue(path, '?version=1', alice);

      const current = (await get(`/v1/secrets/${path}/readers`)).json() as SecretReadersWire;
      expect(current).toMatchObject({ path, version: 3, total: 4 });
      expect(Object.fromEntries(current.readers.map((r) => [r.principal, r.reads]))).toEqual({ [idOf(alice)]: 3, [idOf(bob)]: 1 });
      expect(current.readers[0]!.lastReadAt).toBe(iso(ctx().clock.now()));

      const previous = (await get(`/v1/secrets/${path}/readers?stage=previous`)).json() as SecretReadersWire;
      expect(previous).toMatchObject({ version: 2, total: 2, readers: [{ principal: idOf(bob), reads: 2 }] });
      const byNumber = (await get(`/v1/secrets/${path}/readers?version=1`)).json() as SecretReadersWire;
      expect(byNumber).toMatchObject({ version: 1, total: 1, readers: [{ principal: idOf(alice), reads: 1 }] });
    });

    it('keeps counting against the version, not the stage, after the stage moves', async () => {
      const path = await threeVersions('readers');
      const reader = await ctx().token(['secrets:read']);
      await readValue(path, '', reader);
      await put(path, { value: 'value-four' });
      const previous = (await get(`/v1/secrets/${path}/readers?stage=previous`)).json() as SecretReadersWire;
      expect(previous).toMatchObject({ version: 3, total: 1 });
      const current = (await get(`/v1/secrets/${path}/readers`)).json() as SecretReadersWire;
      expect(current).toMatchObject({ version: 4, total: 0, readers: [] });
    });

    it('leaves out reads older than since (24h by default)', async () => {
      const path = await threeVersions('readers');
      const reader = await ctx().token(['secrets:read']);
      await readValue(path, '', reader);
      await readValue(path, '', reader);
      ctx().clock.advance(25 * HOUR);
      await readValue(path, '', reader);
      const recent = (await get(`/v1/secrets/${path}/readers?since=24h`)).json() as SecretReadersWire;
      expect(recent).toMatchObject({ total: 1, since: iso(ctx().clock.now() - 24 * HOUR) });
      expect((await get(`/v1/secrets/${path}/readers`)).json()).toMatchObject({ total: 1 });
      expect((await get(`/v1/secrets/${path}/readers?since=2d`)).json()).toMatchObject({ total: 3 });
      ctx().clock.advance(2 * MINUTE);
      expect((await get(`/v1/secrets/${path}/readers?since=1m`)).json()).toMatchObject({ total: 0 });
    });

    it('answers 200, never 500, for the longest since a duration can name', async () => {
      const path = await threeVersions('readers');
      const res = await get(`/v1/secrets/${path}/readers?since=999999999d`);
      expect(res.statusCode, res.body).toBe(200);
    });

    it('answers 400 for a bad since and 404 for a stage no version carries', async () => {
      const path = await threeVersions('readers');
      expectProblem(await get(`/v1/secrets/${path}/readers?since=yesterday`), 400);
      expectProblem(await get(`/v1/secrets/${path}/readers?since=0d`), 400);
      expectProblem(await get(`/v1/secrets/${path}/readers?stage=pending`), 404, 'ERR_SECRET_VERSION_NOT_FOUND');
    });
  });

  describe('security', () => {
    it('answers 401 without a token', async () => {
      const path = await threeVersions();
      expectProblem(await get(`/v1/secrets/${path}`, null), 401, 'ERR_UNAUTHENTICATED');
      expectProblem(await get(`/v1/secrets/${path}/readers`, null), 401);
      expectProblem(await get('/v1/secrets', null), 401);
    });

    it('answers 403 to secrets:write or secrets:admin alone: neither implies read', async () => {
      const path = await threeVersions();
      for (const scope of ['secrets:write', 'secrets:admin', 'keys:read']) {
        const token = await ctx().token([scope]);
        expectProblem(await get(`/v1/secrets/${path}`, token), 403, 'ERR_FORBIDDEN');
        expectProblem(await get(`/v1/secrets/${path}/versions`, token), 403, 'ERR_FORBIDDEN');
      }
    });

    it('lets a path-limited reader read inside its path only, and audits the denial', async () => {
      const team = unique('team');
      const inside = `${team}/payments/stripe`;
      const outside = `${team}/billing/stripe`;
      await put(inside, { value: 'inside-value' });
      await put(outside, { value: 'outside-value' });
      const token = await ctx().token([`secrets:read:${team}/payments/*`]);
      expect((await readValue(inside, '', token)).value).toBe('inside-value');
      const head = await auditHead(ctx());
      const res = await get(`/v1/secrets/${outside}`, token);
      const problem = expectProblem(res, 403, 'ERR_FORBIDDEN');
      expect(problem.detail).toContain(`secrets:read:${outside}`);
      expect(res.body).not.toContain('outside-value');
      expectProblem(await get(`/v1/secrets/${outside}/versions`, token), 403);
      expectProblem(await get(`/v1/secrets/${outside}/readers`, token), 403);
      expect(await auditHead(ctx())).toBeGreaterThan(head);
    });

    it('lets a token limited to one secret read that secret and not its children', async () => {
      const base = `${unique('one')}/db`;
      await put(base, { value: 'parent' });
      await put(`${base}/child`, { value: 'child' });
      const token = await ctx().token([`secrets:read:${base}`]);
      expect((await readValue(base, '', token)).value).toBe('parent');
      expectProblem(await get(`/v1/secrets/${base}/child`, token), 403);
    });
  });
});
