/** The key-encryption key routes: status, rotate (new writes at once, re-wrap in the background), retire. */
import { describe, expect, it } from 'vitest';
import type { KekStatusWire, PutSecretResultWire, SecretVersionsWire } from '../../src/contract/index.js';
import { describeEachDialect } from '../support/databases.js';
import { createLocalKekProvider, secureRandom } from '../../src/crypto/index.js';
import { TEST_MASTER_KEY } from '../support/context.js';
import { faultyKekProvider } from '../support/faulty-kek.js';
import { auditAfter, auditHead, expectProblem, unique, useContext } from './helpers.js';

describeEachDialect('key-encryption key routes', (dialect) => {
  const ctx = useContext(dialect);

  const status = async (token?: string): Promise<KekStatusWire> => {
    const res = await ctx().request({ method: 'GET', url: '/v1/kek', ...(token ? { token } : {}) });
    expect(res.statusCode, res.body).toBe(200);
    return res.json() as KekStatusWire;
  };
  const put = async (path: string, value: string): Promise<PutSecretResultWire> => {
    const res = await ctx().request({ method: 'PUT', url: `/v1/secrets/${path}`, body: { value } });
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as PutSecretResultWire;
  };
  const kekVersionsOf = async (path: string): Promise<number[]> =>
    ((await ctx().request({ method: 'GET', url: `/v1/secrets/${path}/versions` })).json() as SecretVersionsWire).versions.map((v) => v.kekVersion);
  const retire = (version: number | string, token?: string) =>
    ctx().request({ method: 'POST', url: `/v1/kek/versions/${version}/retire`, ...(token ? { token } : {}) });

  describe('GET /v1/kek', () => {
    it('shows version 1 active, the data keys under it and nothing to re-wrap', async () => {
      const path = `${unique('kek')}/a`;
      await put(path, 'one');
      await put(path, 'two');
      const reader = await ctx().token(['kek:read']);
      const body = await status(reader);
      expect(body).toMatchObject({ provider: 'local', currentVersion: 1, rewrap: { running: false, toVersion: 1, remaining: 0 } });
      expect(body.versions).toEqual([{ version: 1, state: 'active', createdAt: expect.any(String), retiredAt: null, dataKeys: body.rewrap.total }]);
      expect(body.rewrap.total).toBeGreaterThanOrEqual(2);
    });

    it('answers 401 without a token and 403 for secret scopes', async () => {
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/kek', token: null }), 401);
      const token = await ctx().token(['secrets:admin']);
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/kek', token }), 403, 'ERR_FORBIDDEN');
    });
  });

  describe('rotate and retire', () => {
    it('rotates, re-wraps every data key to the new version, then retires the old one; values still read', async () => {
      const path = `${unique('kek')}/rotate`;
      await put(path, 'before-rotation-1');
      await put(path, 'before-rotation-2');
      // Hold the background job so the "still in use" answer is deterministic.
      await ctx().kek.stop();
      const head = await auditHead(ctx());
      const res = await ctx().request({ method: 'POST', url: '/v1/kek/rotate' });
      expect(res.statusCode, res.body).toBe(201);
      const rotated = res.json() as KekStatusWire;
      const before = rotated.rewrap.total;
      expect(rotated).toMatchObject({ currentVersion: 2, rewrap: { toVersion: 2, remaining: before } });
      expect(rotated.versions.map((v) => [v.version, v.state])).toEqual([
        [1, 'active'],
        [2, 'active'],
      ]);
      // New writes use the new version at once.
      await put(path, 'after-rotation-3');
      expect(await kekVersionsOf(path)).toEqual([2, 1, 1]);

      const inUse = expectProblem(await retire(1), 409, 'ERR_KEK_VERSION_IN_USE', 'conflict');
      expect(inUse.detail).toContain(String(before));
      expectProblem(await retire(2), 409, 'ERR_KEK_VERSION_CURRENT');

      ctx().kek.start();
      await ctx().kek.kick();
      const done = await status();
      expect(done.rewrap).toMatchObject({ running: false, remaining: 0 });
      expect(done.versions.find((v) => v.version === 1)!.dataKeys).toBe(0);
      expect(await kekVersionsOf(path)).toEqual([2, 2, 2]);

      const retired = await retire(1);
      expect(retired.statusCode, retired.body).toBe(200);
      expect((retired.json() as KekStatusWire).versions[0]).toMatchObject({ version: 1, state: 'retired', retiredAt: expect.any(String) });
      expect((await ctx().request({ method: 'GET', url: `/v1/secrets/${path}?version=1` })).json()).toMatchObject({ value: 'before-rotation-1' });
      expect((await ctx().request({ method: 'GET', url: `/v1/secrets/${path}` })).json()).toMatchObject({ value: 'after-rotation-3' });
      // Retiring twice is a no-op, not an error.
      expect((await retire(1)).statusCode).toBe(200);

      const actions = (await auditAfter(ctx(), head)).map((e) => e.action);
      expect(actions.filter((a) => a.startsWith('kek.'))).toEqual(['kek.rotated', ...actions.filter((a) => a === 'kek.rewrapped'), 'kek.retired']);
      expect(actions).toContain('kek.rewrapped');
    });

    it('answers 404 for an unknown version and 400 for one that is not a number', async () => {
      expectProblem(await retire(99), 404, 'ERR_KEK_VERSION_NOT_FOUND');
      expectProblem(await retire(99999999999), 404, 'ERR_KEK_VERSION_NOT_FOUND');
      expectProblem(await retire('one'), 400, 'ERR_INVALID_REQUEST');
      expectProblem(await retire(0), 400, 'ERR_INVALID_REQUEST');
    });

    it('needs kek:admin to rotate or retire; kek:read and secrets:admin get 403, and nothing rotates', async () => {
      const before = (await status()).currentVersion;
      for (const scope of ['kek:read', 'secrets:admin']) {
        const token = await ctx().token([scope]);
        expectProblem(await ctx().request({ method: 'POST', url: '/v1/kek/rotate', token }), 403, 'ERR_FORBIDDEN');
        expectProblem(await retire(1, token), 403, 'ERR_FORBIDDEN');
      }
      expectProblem(await ctx().request({ method: 'POST', url: '/v1/kek/rotate', token: null }), 401);
      expect((await status()).currentVersion).toBe(before);
    });
  });
});

describeEachDialect('key-encryption key routes when the provider fails mid re-wrap', (dialect) => {
  const provider = faultyKekProvider(createLocalKekProvider(TEST_MASTER_KEY, secureRandom));
  const ctx = useContext(dialect, { kekProvider: provider });

  it('rotate still answers 201; status shows the keys left, retire is refused, reads work; the next run finishes', async () => {
    const path = `${unique('kek-fault')}/a`;
    for (const value of ['one', 'two', 'three']) expect((await ctx().request({ method: 'PUT', url: `/v1/secrets/${path}`, body: { value } })).statusCode).toBe(201);
    const head = await auditHead(ctx());
    // The background job is held back so the test observes the very run the fault hits.
    await ctx().kek.stop();
    const rotated = await ctx().request({ method: 'POST', url: '/v1/kek/rotate' });
    expect(rotated.statusCode, rotated.body).toBe(201);
    const total = (rotated.json() as KekStatusWire).rewrap.total;
    provider.failOn('unwrapKey', 2);
    ctx().kek.start();
    await expect(ctx().kek.kick()).rejects.toMatchObject({ code: 'ERR_KEK_UNAVAILABLE' });

    const cut = await ctx().request({ method: 'GET', url: '/v1/kek' });
    expect(cut.statusCode).toBe(200);
    // One batch (the default size holds every key here), failed whole: nothing moved.
    expect((cut.json() as KekStatusWire).rewrap).toMatchObject({ running: false, toVersion: 2, remaining: total });
    expectProblem(await ctx().request({ method: 'POST', url: '/v1/kek/versions/1/retire' }), 409, 'ERR_KEK_VERSION_IN_USE');
    ctx().secrets.clearCache();
    expect((await ctx().request({ method: 'GET', url: `/v1/secrets/${path}?version=1` })).json()).toMatchObject({ value: 'one' });

    await ctx().kek.kick();
    expect(((await ctx().request({ method: 'GET', url: '/v1/kek' })).json() as KekStatusWire).rewrap).toMatchObject({ running: false, remaining: 0 });
    expect((await ctx().request({ method: 'POST', url: '/v1/kek/versions/1/retire' })).statusCode).toBe(200);
    expect((await ctx().request({ method: 'GET', url: `/v1/secrets/${path}?version=2` })).json()).toMatchObject({ value: 'two' });
    const actions = (await auditAfter(ctx(), head)).map((e) => e.action).filter((a) => a.startsWith('kek.'));
    expect(actions).toEqual(['kek.rotated', 'kek.rewrapped', 'kek.retired']);
  });
});
