/** Soft delete with a recovery window, restore, purge after the window, destroy of versions, and pruning past maxVersions. */
import { describe, expect, it } from 'vitest';
import type { PutSecretResultWire, SecretMetadataWire, SecretPageWire, SecretVersionsWire } from '../../src/contract/index.js';
import { describeEachDialect } from '../support/databases.js';
import { DAY, HOUR, auditAfter, auditHead, expectProblem, iso, problemFields, unique, useContext } from './helpers.js';

describeEachDialect('deleting and destroying secrets', (dialect) => {
  const ctx = useContext(dialect);

  const request = (method: 'GET' | 'PUT' | 'POST' | 'DELETE', url: string, body?: unknown, token?: string | null) =>
    ctx().request({ method, url, ...(body !== undefined ? { body } : {}), ...(token !== undefined ? { token } : {}) });
  const put = async (path: string, body: Record<string, unknown>): Promise<PutSecretResultWire> => {
    const res = await request('PUT', `/v1/secrets/${path}`, body);
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as PutSecretResultWire;
  };
  const versionsOf = async (path: string): Promise<SecretVersionsWire> => {
    const res = await request('GET', `/v1/secrets/${path}/versions`);
    expect(res.statusCode, res.body).toBe(200);
    return res.json() as SecretVersionsWire;
  };
  const listed = async (query: string): Promise<string[]> => {
    const res = await request('GET', `/v1/secrets?${query}`);
    expect(res.statusCode, res.body).toBe(200);
    return (res.json() as SecretPageWire).data.map((s) => s.path);
  };
  const rowsOf = async (secretId: string) =>
    ctx().store.db.selectFrom('secret_versions').selectAll().where('secret_id', '=', secretId).orderBy('version', 'asc').execute();

  describe('DELETE /v1/secrets/{path}', () => {
    it('schedules deletion 7 days out, hides the secret from reads and lists, and audits it', async () => {
      const prefix = unique('del');
      const path = `${prefix}/db`;
      const created = await put(path, { value: 'soon-gone' });
      const head = await auditHead(ctx());
      const res = await request('DELETE', `/v1/secrets/${path}`);
      expect(res.statusCode, res.body).toBe(200);
      const now = ctx().clock.now();
      expect(res.json() as SecretMetadataWire).toMatchObject({ id: created.id, deletedAt: iso(now), deletionDate: iso(now + 7 * DAY), currentVersion: 1 });
      expect(res.body).not.toContain('soon-gone');
      for (const url of [`/v1/secrets/${path}`, `/v1/secrets/${path}?version=1`, `/v1/secrets/${path}/versions`, `/v1/secrets/${path}/readers`]) {
        const problem = expectProblem(await request('GET', url), 404, 'ERR_SECRET_SCHEDULED_FOR_DELETION', 'not_found');
        expect(problem.detail).toContain(iso(now + 7 * DAY));
      }
      expect(await listed(`prefix=${prefix}/`)).toEqual([]);
      expect(await listed(`prefix=${prefix}/&deleted=true`)).toEqual([path]);
      const events = await auditAfter(ctx(), head);
      expect(events.map((e) => [e.action, e.target])).toEqual([['secret.deleted', created.id]]);
      expect(events[0]!.data).toMatchObject({ path, deletionDate: iso(now + 7 * DAY) });
    });

    it('refuses stage moves, destroy and a second delete while scheduled', async () => {
      const path = `${unique('del')}/locked`;
      await put(path, { value: 'a' });
      await put(path, { value: 'b' });
      await request('DELETE', `/v1/secrets/${path}`);
      const head = await auditHead(ctx());
      expectProblem(await request('POST', `/v1/secrets/${path}/rollback`, {}), 404, 'ERR_SECRET_SCHEDULED_FOR_DELETION');
      expectProblem(await request('POST', `/v1/secrets/${path}/destroy`, { versions: [1] }), 404, 'ERR_SECRET_SCHEDULED_FOR_DELETION');
      expectProblem(await request('DELETE', `/v1/secrets/${path}`), 404, 'ERR_SECRET_SCHEDULED_FOR_DELETION');
      expect(await auditHead(ctx())).toBe(head);
    });

    it('takes a recovery window from 1d to 30d', async () => {
      for (const [window, ms] of [
        ['1d', DAY],
        ['24h', DAY],
        ['30d', 30 * DAY],
      ] as const) {
        const path = `${unique('del')}/w`;
        await put(path, { value: 'x' });
        const res = await request('DELETE', `/v1/secrets/${path}?recoveryWindow=${window}`);
        expect(res.statusCode, res.body).toBe(200);
        expect((res.json() as SecretMetadataWire).deletionDate).toBe(iso(ctx().clock.now() + ms));
      }
    });

    it.each(['0d', '23h', '31d', '721h', 'soon', '999999999d'])('answers 400 for recoveryWindow=%s and leaves the secret alone', async (window) => {
      const path = `${unique('del')}/bad-window`;
      await put(path, { value: 'stays' });
      const head = await auditHead(ctx());
      const problem = expectProblem(await request('DELETE', `/v1/secrets/${path}?recoveryWindow=${window}`), 400);
      expect(problemFields(problem)).toContain('recoveryWindow');
      expect(await auditHead(ctx())).toBe(head);
      expect((await request('GET', `/v1/secrets/${path}`)).statusCode).toBe(200);
    });

    it('answers 404 ERR_SECRET_NOT_FOUND for an unknown secret', async () => {
      expectProblem(await request('DELETE', `/v1/secrets/${unique('ghost')}/x`), 404, 'ERR_SECRET_NOT_FOUND');
    });
  });

  describe('POST /v1/secrets/{path}/restore', () => {
    it('cancels the deletion: every version, stage and value is back, and it is audited', async () => {
      const path = `${unique('restore')}/db`;
      await put(path, { value: 'first' });
      const second = await put(path, { value: { user: 'app', password: 'second' } });
      await request('DELETE', `/v1/secrets/${path}?recoveryWindow=3d`);
      ctx().clock.advance(2 * DAY);
      const head = await auditHead(ctx());
      const res = await request('POST', `/v1/secrets/${path}/restore`);
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json() as SecretMetadataWire).toMatchObject({ deletedAt: null, deletionDate: null, stages: { current: 2, previous: 1 } });
      expect((await request('GET', `/v1/secrets/${path}`)).json()).toMatchObject({ version: 2, value: { user: 'app', password: 'second' } });
      expect((await request('GET', `/v1/secrets/${path}?stage=previous`)).json()).toMatchObject({ value: 'first' });
      expect((await auditAfter(ctx(), head)).map((e) => [e.action, e.target])).toEqual([['secret.restored', second.id]]);
      // Restored, it is no longer due: time passing does not purge it.
      ctx().clock.advance(5 * DAY);
      await ctx().secrets.purgeDue();
      expect((await request('GET', `/v1/secrets/${path}`)).statusCode).toBe(200);
    });

    it('answers 409 ERR_SECRET_NOT_DELETED for a live secret and 404 for an unknown one', async () => {
      const path = `${unique('restore')}/live`;
      await put(path, { value: 'x' });
      expectProblem(await request('POST', `/v1/secrets/${path}/restore`), 409, 'ERR_SECRET_NOT_DELETED');
      expectProblem(await request('POST', `/v1/secrets/${unique('ghost')}/x/restore`), 404, 'ERR_SECRET_NOT_FOUND');
    });

    it('answers 400 for a body with fields', async () => {
      const path = `${unique('restore')}/body`;
      await put(path, { value: 'x' });
      await request('DELETE', `/v1/secrets/${path}`);
      expectProblem(await request('POST', `/v1/secrets/${path}/restore`, { force: true }), 400, 'ERR_INVALID_REQUEST');
      expectProblem(await request('GET', `/v1/secrets/${path}`), 404, 'ERR_SECRET_SCHEDULED_FOR_DELETION');
    });
  });

  describe('after the recovery window', () => {
    it('reads as not found, cannot be restored, and a put on the path starts a new secret at version 1', async () => {
      const path = `${unique('purge')}/db`;
      const old = await put(path, { value: 'old-one' });
      await put(path, { value: 'old-two' });
      await request('DELETE', `/v1/secrets/${path}?recoveryWindow=1d`);
      ctx().clock.advance(DAY + HOUR);
      expectProblem(await request('GET', `/v1/secrets/${path}`), 404, 'ERR_SECRET_NOT_FOUND');
      expectProblem(await request('POST', `/v1/secrets/${path}/restore`), 404, 'ERR_SECRET_NOT_FOUND');
      const head = await auditHead(ctx());
      const fresh = await put(path, { value: 'new-one' });
      expect(fresh).toMatchObject({ version: 1, created: true, stages: ['current'] });
      expect(fresh.id).not.toBe(old.id);
      const events = await auditAfter(ctx(), head);
      expect(events.map((e) => [e.action, e.target])).toEqual([
        ['secret.purged', old.id],
        ['secret.created', fresh.id],
        ['secret.version.added', fresh.id],
      ]);
      expect(await rowsOf(old.id)).toEqual([]);
      expect((await versionsOf(path)).versions.map((v) => v.version)).toEqual([1]);
      expect((await request('GET', `/v1/secrets/${path}?version=2`)).statusCode).toBe(404);
    });

    it('is purged by the background sweep: rows, stages and read counts go, and secret.purged is audited', async () => {
      const prefix = unique('sweep');
      const path = `${prefix}/db`;
      const created = await put(path, { value: 'sweep-me' });
      await request('GET', `/v1/secrets/${path}`);
      await request('GET', `/v1/secrets/${path}/readers`);
      await request('DELETE', `/v1/secrets/${path}?recoveryWindow=1d`);
      ctx().clock.advance(DAY);
      const head = await auditHead(ctx());
      expect(await ctx().secrets.purgeDue()).toBeGreaterThanOrEqual(1);
      expect((await auditAfter(ctx(), head)).filter((e) => e.target === created.id).map((e) => e.action)).toEqual(['secret.purged']);
      const db = ctx().store.db;
      expect(await db.selectFrom('secrets').select('id').where('id', '=', created.id).execute()).toEqual([]);
      expect(await rowsOf(created.id)).toEqual([]);
      expect(await db.selectFrom('secret_stages').select('stage').where('secret_id', '=', created.id).execute()).toEqual([]);
      expect(await db.selectFrom('secret_reads').select('version').where('secret_id', '=', created.id).execute()).toEqual([]);
      expect(await listed(`prefix=${prefix}/&deleted=true`)).toEqual([]);
    });
  });

  describe('POST /v1/secrets/{path}/destroy', () => {
    it('erases the values of the chosen versions for good and keeps their metadata', async () => {
      const path = `${unique('destroy')}/db`;
      const created = await put(path, { value: 'v1-secret' });
      await put(path, { value: 'v2-secret' });
      await put(path, { value: 'v3-secret' });
      const head = await auditHead(ctx());
      const res = await request('POST', `/v1/secrets/${path}/destroy`, { versions: [2, 1, 1] });
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json() as SecretVersionsWire;
      expect(body.versions.map((v) => [v.version, v.destroyedAt])).toEqual([
        [3, null],
        [2, iso(ctx().clock.now())],
        [1, iso(ctx().clock.now())],
      ]);
      expect(body.secret.stages).toEqual({ current: 3, previous: 2 });
      expectProblem(await request('GET', `/v1/secrets/${path}?stage=previous`), 404, 'ERR_SECRET_VERSION_DESTROYED');
      expectProblem(await request('GET', `/v1/secrets/${path}?version=1`), 404, 'ERR_SECRET_VERSION_DESTROYED');
      expect((await request('GET', `/v1/secrets/${path}`)).json()).toMatchObject({ value: 'v3-secret' });
      const rows = await rowsOf(created.id);
      expect(rows.map((r) => [r.version, r.sealed, r.wrapped_key, r.value_digest])).toEqual([
        [1, null, null, null],
        [2, null, null, null],
        [3, expect.any(String), expect.any(String), null],
      ]);
      const events = await auditAfter(ctx(), head);
      expect(events.map((e) => e.action)).toEqual(['secret.versions.destroyed']);
      expect(events[0]!.data).toEqual({ path, versions: [1, 2] });
      // Destroying again changes nothing and audits nothing.
      const again = await auditHead(ctx());
      expect((await request('POST', `/v1/secrets/${path}/destroy`, { versions: [1] })).statusCode).toBe(200);
      expect(await auditHead(ctx())).toBe(again);
    });

    it('refuses the current version with 409 and destroys none of the others asked for', async () => {
      const path = `${unique('destroy')}/current`;
      const created = await put(path, { value: 'a' });
      await put(path, { value: 'b' });
      const head = await auditHead(ctx());
      expectProblem(await request('POST', `/v1/secrets/${path}/destroy`, { versions: [1, 2] }), 409, 'ERR_SECRET_VERSION_IS_CURRENT');
      expectProblem(await request('POST', `/v1/secrets/${path}/destroy`, { versions: [1, 7] }), 404, 'ERR_SECRET_VERSION_NOT_FOUND');
      expectProblem(await request('POST', `/v1/secrets/${path}/destroy`, { versions: [1, 99999999999] }), 404, 'ERR_SECRET_VERSION_NOT_FOUND');
      expect(await auditHead(ctx())).toBe(head);
      expect((await rowsOf(created.id)).every((r) => r.sealed !== null && r.destroyed_at === null)).toBe(true);
    });

    it('refuses an idempotent retry of a destroyed version\'s put as a reuse, never resurrecting it', async () => {
      const path = `${unique('destroy')}/token`;
      await put(path, { value: 'tokened', requestToken: 'once' });
      await put(path, { value: 'later' });
      await request('POST', `/v1/secrets/${path}/destroy`, { versions: [1] });
      expectProblem(await request('PUT', `/v1/secrets/${path}`, { value: 'tokened', requestToken: 'once' }), 409, 'ERR_SECRET_REQUEST_TOKEN_REUSED');
    });

    it.each([
      ['no versions', {}],
      ['an empty list', { versions: [] }],
      ['version 0', { versions: [0] }],
      ['a string', { versions: ['1'] }],
      ['101 versions', { versions: Array.from({ length: 101 }, (_, i) => i + 1) }],
      ['an unknown field', { versions: [1], wipe: true }],
    ])('answers 400 for %s', async (_name, body) => {
      const path = `${unique('destroy')}/bad`;
      await put(path, { value: 'a' });
      expectProblem(await request('POST', `/v1/secrets/${path}/destroy`, body), 400, 'ERR_INVALID_REQUEST');
    });
  });

  describe('pruning past maxVersions', () => {
    it('keeps the newest maxVersions versions, deleting the oldest, and audits which went', async () => {
      const path = `${unique('prune')}/db`;
      const created = await put(path, { value: 'p1', maxVersions: 3 });
      for (let i = 2; i <= 4; i++) await put(path, { value: `p${i}` });
      const head = await auditHead(ctx());
      await put(path, { value: 'p5' });
      expect((await versionsOf(path)).versions.map((v) => v.version)).toEqual([5, 4, 3]);
      expect((await rowsOf(created.id)).map((r) => r.version)).toEqual([3, 4, 5]);
      const events = await auditAfter(ctx(), head);
      expect(events.map((e) => e.action)).toEqual(['secret.version.added']);
      expect(events[0]!.data).toMatchObject({ version: 5, pruned: [2] });
      expectProblem(await request('GET', `/v1/secrets/${path}?version=1`), 404, 'ERR_SECRET_VERSION_NOT_FOUND');
    });

    it('never prunes a version that carries a stage, pruning the oldest unstaged one instead', async () => {
      const path = `${unique('prune')}/staged`;
      await put(path, { value: 'keep-me', maxVersions: 3 });
      expect((await request('POST', `/v1/secrets/${path}/stages`, { stage: 'golden', version: 1 })).statusCode).toBe(200);
      for (let i = 2; i <= 6; i++) await put(path, { value: `v${i}` });
      const { versions } = await versionsOf(path);
      expect(versions.map((v) => [v.version, v.stages])).toEqual([
        [6, ['current']],
        [5, ['previous']],
        [1, ['golden']],
      ]);
      expect((await request('GET', `/v1/secrets/${path}?stage=golden`)).json()).toMatchObject({ value: 'keep-me' });
    });

    it('keeps more than maxVersions when every version carries a stage', async () => {
      const path = `${unique('prune')}/all-staged`;
      await put(path, { value: 'a', maxVersions: 1 });
      await put(path, { value: 'b' });
      await put(path, { value: 'c', stage: 'pending' });
      expect((await versionsOf(path)).versions.map((v) => v.stages)).toEqual([['pending'], ['current'], ['previous']]);
    });

    it('prunes to 20 versions by default', async () => {
      const path = `${unique('prune')}/default`;
      for (let i = 1; i <= 22; i++) await put(path, { value: `d${i}` });
      const { versions, secret } = await versionsOf(path);
      expect(secret.maxVersions).toBe(20);
      expect(versions.map((v) => v.version)).toEqual(Array.from({ length: 20 }, (_, i) => 22 - i));
    });

    it('prunes at once when a put lowers maxVersions', async () => {
      const path = `${unique('prune')}/lower`;
      for (let i = 1; i <= 6; i++) await put(path, { value: `l${i}` });
      await put(path, { value: 'l7', maxVersions: 2 });
      expect((await versionsOf(path)).versions.map((v) => v.version)).toEqual([7, 6]);
    });
  });

  describe('security', () => {
    it('needs secrets:admin on the path to delete, restore or destroy; write or read is 403', async () => {
      const team = unique('team');
      const path = `${team}/guarded`;
      await put(path, { value: 'a' });
      await put(path, { value: 'b' });
      for (const scope of ['secrets:write', 'secrets:read', `secrets:admin:${team}-other/*`]) {
        const token = await ctx().token([scope]);
        expectProblem(await request('DELETE', `/v1/secrets/${path}`, undefined, token), 403, 'ERR_FORBIDDEN');
        expectProblem(await request('POST', `/v1/secrets/${path}/destroy`, { versions: [1] }, token), 403, 'ERR_FORBIDDEN');
        expectProblem(await request('POST', `/v1/secrets/${path}/restore`, undefined, token), 403, 'ERR_FORBIDDEN');
      }
      expectProblem(await request('DELETE', `/v1/secrets/${path}`, undefined, null), 401);
      expect((await request('GET', `/v1/secrets/${path}?version=1`)).statusCode).toBe(200);
      const admin = await ctx().token([`secrets:admin:${team}/*`]);
      expect((await request('POST', `/v1/secrets/${path}/destroy`, { versions: [1] }, admin)).statusCode).toBe(200);
      expect((await request('DELETE', `/v1/secrets/${path}`, undefined, admin)).statusCode).toBe(200);
      expect((await request('POST', `/v1/secrets/${path}/restore`, undefined, admin)).statusCode).toBe(200);
    });

    it('answers 400 ERR_SECRET_PATH_INVALID for DELETE on a path ending in an action word', async () => {
      expectProblem(await request('DELETE', '/v1/secrets/payments/versions'), 400, 'ERR_SECRET_PATH_INVALID');
      expectProblem(await request('DELETE', '/v1/secrets/Payments/x'), 400, 'ERR_SECRET_PATH_INVALID');
    });
  });
});
