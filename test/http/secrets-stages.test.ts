/** Stage moves: promote pending, roll back to previous, custom stages — each atomic, check-and-set, audited. */
import { describe, expect, it } from 'vitest';
import type { PutSecretResultWire, SecretMetadataWire, SecretValueWire, SecretVersionsWire } from '../../src/contract/index.js';
import { describeEachDialect } from '../support/databases.js';
import { auditAfter, auditHead, expectProblem, problemFields, unique, useContext } from './helpers.js';

describeEachDialect('secret stages', (dialect) => {
  const ctx = useContext(dialect);

  const post = (path: string, action: string, body?: unknown, token?: string) =>
    ctx().request({ method: 'POST', url: `/v1/secrets/${path}/${action}`, ...(body !== undefined ? { body } : {}), ...(token ? { token } : {}) });
  const put = async (path: string, body: Record<string, unknown>): Promise<PutSecretResultWire> => {
    const res = await ctx().request({ method: 'PUT', url: `/v1/secrets/${path}`, body });
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as PutSecretResultWire;
  };
  const stagesOf = async (path: string): Promise<Record<string, number>> => {
    const res = await ctx().request({ method: 'GET', url: `/v1/secrets/${path}/versions` });
    expect(res.statusCode, res.body).toBe(200);
    return (res.json() as SecretVersionsWire).secret.stages;
  };
  const valueOf = async (path: string, query = ''): Promise<unknown> => {
    const res = await ctx().request({ method: 'GET', url: `/v1/secrets/${path}${query}` });
    expect(res.statusCode, res.body).toBe(200);
    return (res.json() as SecretValueWire).value;
  };
  /** current 2 ('live-2'), previous 1, pending 3 ('next-3'). */
  const withPending = async (): Promise<string> => {
    const path = `${unique('stages')}/api/key`;
    await put(path, { value: 'live-1' });
    await put(path, { value: 'live-2' });
    await put(path, { value: 'next-3', stage: 'pending' });
    return path;
  };

  describe('POST /v1/secrets/{path}/promote', () => {
    it('makes pending current and the old current previous, in one audited step', async () => {
      const path = await withPending();
      const head = await auditHead(ctx());
      const res = await post(path, 'promote');
      expect(res.statusCode, res.body).toBe(200);
      expect((res.json() as SecretMetadataWire).stages).toEqual({ current: 3, previous: 2 });
      expect(await valueOf(path)).toBe('next-3');
      expect(await valueOf(path, '?stage=previous')).toBe('live-2');
      const events = await auditAfter(ctx(), head);
      expect(events.map((e) => e.action)).toEqual(['secret.promoted']);
      expect(events[0]!.data).toMatchObject({ path, before: { current: 2, previous: 1, pending: 3 }, after: { current: 3, previous: 2 } });
    });

    it('promotes with a matching cas and refuses a stale one with 409, moving nothing', async () => {
      const path = await withPending();
      const head = await auditHead(ctx());
      expectProblem(await post(path, 'promote', { cas: 1 }), 409, 'ERR_SECRET_CAS_MISMATCH');
      expect(await auditHead(ctx())).toBe(head);
      expect(await stagesOf(path)).toEqual({ current: 2, previous: 1, pending: 3 });
      expect((await post(path, 'promote', { cas: 2 })).statusCode).toBe(200);
    });

    it('answers 409 ERR_SECRET_NO_PENDING when nothing is pending', async () => {
      const path = `${unique('stages')}/none`;
      await put(path, { value: 'only' });
      const head = await auditHead(ctx());
      expectProblem(await post(path, 'promote', {}), 409, 'ERR_SECRET_NO_PENDING', 'conflict');
      expect(await auditHead(ctx())).toBe(head);
    });

    it('promotes the first version of a secret created pending, leaving no previous', async () => {
      const path = `${unique('stages')}/fresh`;
      await put(path, { value: 'first', stage: 'pending' });
      expectProblem(await ctx().request({ method: 'GET', url: `/v1/secrets/${path}` }), 404, 'ERR_SECRET_VERSION_NOT_FOUND');
      const res = await post(path, 'promote');
      expect((res.json() as SecretMetadataWire).stages).toEqual({ current: 1 });
    });

    it('answers 400 for an unknown body field and 404 for an unknown secret', async () => {
      const path = await withPending();
      const problem = expectProblem(await post(path, 'promote', { cas: 2, force: true }), 400, 'ERR_INVALID_REQUEST');
      expect(problemFields(problem)).toContain('force');
      expectProblem(await post(path, 'promote', { cas: 'two' }), 400, 'ERR_INVALID_REQUEST');
      expectProblem(await post(`${unique('ghost')}/x`, 'promote'), 404, 'ERR_SECRET_NOT_FOUND');
      expect(await stagesOf(path)).toEqual({ current: 2, previous: 1, pending: 3 });
    });
  });

  describe('POST /v1/secrets/{path}/rollback', () => {
    it('swaps current and previous, and a second rollback swaps them back', async () => {
      const path = `${unique('stages')}/rb`;
      await put(path, { value: 'good' });
      await put(path, { value: 'bad' });
      const head = await auditHead(ctx());
      const res = await post(path, 'rollback', { cas: 2 });
      expect(res.statusCode, res.body).toBe(200);
      expect((res.json() as SecretMetadataWire).stages).toEqual({ current: 1, previous: 2 });
      expect(await valueOf(path)).toBe('good');
      expect((await auditAfter(ctx(), head)).map((e) => e.action)).toEqual(['secret.rolled_back']);
      await post(path, 'rollback');
      expect(await valueOf(path)).toBe('bad');
    });

    it('answers 409 ERR_SECRET_NO_PREVIOUS for a secret with one version', async () => {
      const path = `${unique('stages')}/one`;
      await put(path, { value: 'only' });
      expectProblem(await post(path, 'rollback'), 409, 'ERR_SECRET_NO_PREVIOUS');
    });

    it('refuses to roll back to a destroyed version with 404 ERR_SECRET_VERSION_DESTROYED, moving nothing', async () => {
      const path = `${unique('stages')}/destroyed`;
      await put(path, { value: 'a' });
      await put(path, { value: 'b' });
      expect((await post(path, 'destroy', { versions: [1] })).statusCode).toBe(200);
      expectProblem(await post(path, 'rollback'), 404, 'ERR_SECRET_VERSION_DESTROYED');
      expect(await stagesOf(path)).toEqual({ current: 2, previous: 1 });
    });
  });

  describe('POST /v1/secrets/{path}/stages', () => {
    it('puts a custom stage on a version, moves it, and takes it off', async () => {
      const path = await withPending();
      const head = await auditHead(ctx());
      let res = await post(path, 'stages', { stage: 'canary', version: 3 });
      expect(res.statusCode, res.body).toBe(200);
      expect((res.json() as SecretMetadataWire).stages).toMatchObject({ canary: 3 });
      expect(await valueOf(path, '?stage=canary')).toBe('next-3');
      res = await post(path, 'stages', { stage: 'canary', version: 1 });
      expect((res.json() as SecretMetadataWire).stages).toEqual({ current: 2, previous: 1, pending: 3, canary: 1 });
      res = await post(path, 'stages', { stage: 'canary', version: null });
      expect((res.json() as SecretMetadataWire).stages).toEqual({ current: 2, previous: 1, pending: 3 });
      // Taking off a stage no version carries changes nothing, and writes no event.
      res = await post(path, 'stages', { stage: 'canary', version: null });
      expect(res.statusCode, res.body).toBe(200);
      const events = await auditAfter(ctx(), head);
      expect(events.map((e) => e.action)).toEqual(['secret.stage.moved', 'secret.stage.moved', 'secret.stage.moved']);
      expect(events[1]!.data).toMatchObject({ before: { canary: 3 }, after: { canary: 1 } });
    });

    it('shows a version carrying several stages with all of them', async () => {
      const path = await withPending();
      await post(path, 'stages', { stage: 'blue', version: 2 });
      await post(path, 'stages', { stage: 'green', version: 2 });
      const res = await ctx().request({ method: 'GET', url: `/v1/secrets/${path}?version=2` });
      expect((res.json() as SecretValueWire).stages).toEqual(['blue', 'current', 'green']);
    });

    it.each(['current', 'previous', 'pending'])('refuses to move the reserved stage %s with 400 ERR_SECRET_STAGE_RESERVED', async (stage) => {
      const path = await withPending();
      const head = await auditHead(ctx());
      expectProblem(await post(path, 'stages', { stage, version: 1 }), 400, 'ERR_SECRET_STAGE_RESERVED');
      expect(await auditHead(ctx())).toBe(head);
      expect(await stagesOf(path)).toEqual({ current: 2, previous: 1, pending: 3 });
    });

    it('answers 404 for a version that does not exist, and a stale cas 409', async () => {
      const path = await withPending();
      expectProblem(await post(path, 'stages', { stage: 'canary', version: 9 }), 404, 'ERR_SECRET_VERSION_NOT_FOUND');
      expectProblem(await post(path, 'stages', { stage: 'canary', version: 99999999999 }), 404, 'ERR_SECRET_VERSION_NOT_FOUND');
      expectProblem(await post(path, 'stages', { stage: 'canary', version: 1, cas: 1 }), 409, 'ERR_SECRET_CAS_MISMATCH');
      expect(await stagesOf(path)).toEqual({ current: 2, previous: 1, pending: 3 });
    });

    it('allows 20 custom stages and refuses a 21st with 422 ERR_SECRET_TOO_MANY_STAGES', async () => {
      const path = await withPending();
      for (let i = 0; i < 20; i++) expect((await post(path, 'stages', { stage: `s${i}`, version: 1 })).statusCode).toBe(200);
      expectProblem(await post(path, 'stages', { stage: 's20', version: 1 }), 422, 'ERR_SECRET_TOO_MANY_STAGES', 'policy_violation');
      // Moving one of the twenty is still fine.
      expect((await post(path, 'stages', { stage: 's0', version: 2 })).statusCode).toBe(200);
      expect(Object.keys(await stagesOf(path))).toHaveLength(23);
    });

    it.each([
      ['no version', { stage: 'canary' }],
      ['an uppercase stage', { stage: 'Canary', version: 1 }],
      ['a stage starting with a digit', { stage: '1st', version: 1 }],
      ['a 33-character stage', { stage: `a${'b'.repeat(32)}`, version: 1 }],
      ['version 0', { stage: 'canary', version: 0 }],
      ['an unknown field', { stage: 'canary', version: 1, note: 'x' }],
    ])('answers 400 for %s', async (_name, body) => {
      const path = await withPending();
      const head = await auditHead(ctx());
      expectProblem(await post(path, 'stages', body), 400);
      expect(await auditHead(ctx())).toBe(head);
    });
  });

  describe('security', () => {
    it('answers 401 without a token and 403 for a reader', async () => {
      const path = await withPending();
      const reader = await ctx().token(['secrets:read']);
      for (const [action, body] of [
        ['promote', {}],
        ['rollback', {}],
        ['stages', { stage: 'canary', version: 1 }],
      ] as const) {
        expectProblem(await ctx().request({ method: 'POST', url: `/v1/secrets/${path}/${action}`, body, token: null }), 401);
        expectProblem(await post(path, action, body, reader), 403, 'ERR_FORBIDDEN');
      }
      expect(await stagesOf(path)).toEqual({ current: 2, previous: 1, pending: 3 });
    });

    it('lets a path-limited writer promote inside its path only', async () => {
      const team = unique('team');
      const inside = `${team}/ok/key`;
      const outside = `${team}/no/key`;
      for (const path of [inside, outside]) {
        await put(path, { value: 'a' });
        await put(path, { value: 'b', stage: 'pending' });
      }
      const token = await ctx().token([`secrets:write:${team}/ok/*`]);
      expect((await post(inside, 'promote', {}, token)).statusCode).toBe(200);
      expectProblem(await post(outside, 'promote', {}, token), 403, 'ERR_FORBIDDEN');
      expect(await stagesOf(outside)).toEqual({ current: 1, pending: 2 });
    });

    it('answers 400 ERR_SECRET_PATH_INVALID for an invalid path before the stage move', async () => {
      expectProblem(await post('Bad/Path', 'promote'), 400, 'ERR_SECRET_PATH_INVALID');
      expectProblem(await post('a/versions', 'rollback'), 400, 'ERR_SECRET_PATH_INVALID');
    });
  });
});
