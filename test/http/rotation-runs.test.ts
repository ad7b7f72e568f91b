/**
 * /v1/rotations over HTTP on both dialects: starting a run (and refusing bad input and a second
 * run of one target), reading runs with their timeline, rolling back, the figures in
 * /v1/rotation/stats and /metrics, and 401/403 on every route.
 */
import { describe, expect, it } from 'vitest';
import { describeEachDialect } from '../support/databases.js';
import { createKey, expectProblem, problemFields, unique, useContext, verifyKey } from './helpers.js';
import type { RotationRunDetailWire, RotationRunListWire, RotationRunWire, RotationStatsWire } from '../../src/contract/index.js';

describeEachDialect('/v1/rotations', (dialect) => {
  const ctx = useContext(dialect);
  const start = (body: unknown, token?: string | null) => ctx().request({ method: 'POST', url: '/v1/rotations', body, ...(token !== undefined ? { token } : {}) });

  /** Ticks the engine until the run leaves `running` or waits. */
  async function settle(id: string): Promise<RotationRunDetailWire> {
    for (let i = 0; i < 20; i += 1) {
      await ctx().rotation.tick();
      const run = await ctx().rotation.get(id);
      if (run.status !== 'running' || Date.parse(run.nextAt ?? '') > ctx().clock.now()) break;
    }
    const res = await ctx().request({ method: 'GET', url: `/v1/rotations/${id}` });
    expect(res.statusCode, res.body).toBe(200);
    return res.json() as RotationRunDetailWire;
  }

  describe('happy', () => {
    it('starts a key rotation for a leak report, and shows its timeline and figures', async () => {
      const owner = unique('leaky');
      const issued = await createKey(ctx(), { owner });
      const res = await start({ key: issued.id, reason: 'leak', overlap: '1h' });
      expect(res.statusCode, res.body).toBe(201);
      const run = res.json() as RotationRunWire;
      expect(run).toMatchObject({ status: 'running', step: 'create', trigger: 'event', reason: 'leak', target: { kind: 'key', id: issued.id }, connector: 'keysmith-key', createdBy: expect.stringMatching(/^key_/) });

      const detail = await settle(run.id);
      expect(detail.status).toBe('running');
      expect(detail.step).toBe('gate');
      expect(detail.timeline.map((step) => step.step)).toEqual(['create', 'set', 'test', 'promote', 'gate']);
      expect(detail.newCredential.vendorId).toMatch(/^key_/);
      // The old key answers VALID with the rotation notice while the overlap lasts; no key appears in the run.
      const verified = await verifyKey(ctx(), issued.key);
      expect(verified).toMatchObject({ valid: true, rotation: { replacedBy: detail.newCredential.vendorId } });
      expect(JSON.stringify(detail)).not.toContain(issued.key.split('_')[3]);

      const second = await start({ key: issued.id, reason: 'leak' });
      const conflict = expectProblem(second, 409, 'ERR_ROTATION_IN_PROGRESS');
      expect(conflict.detail).toContain(run.id);

      const listed = (await ctx().request({ method: 'GET', url: `/v1/rotations?target=${issued.id}&status=running` })).json() as RotationRunListWire;
      expect(listed.data.map((item) => item.id)).toEqual([run.id]);

      const stats = (await ctx().request({ method: 'GET', url: '/v1/rotation/stats' })).json() as RotationStatsWire;
      expect(stats.runs.running).toBeGreaterThanOrEqual(1);
      expect(stats.medianSecondsToRotate.incident).not.toBeNull();
      const metrics = await ctx().request({ method: 'GET', url: '/metrics' });
      expect(metrics.body).toMatch(/keysmith_rotation_runs\{status="running"\} [1-9]/);
      expect(metrics.body).toContain('keysmith_rotation_revocations_owed');
      expect(metrics.body).toMatch(/keysmith_rotation_median_seconds\{trigger="incident"\} /);

      // Not done yet: nothing to roll back.
      expectProblem(await ctx().request({ method: 'POST', url: `/v1/rotations/${run.id}/rollback` }), 409, 'ERR_ROTATION_ROLLBACK_CLOSED');
    });

    it('pages through runs newest first', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 3; i += 1) {
        const issued = await createKey(ctx(), { owner: unique('paged') });
        ctx().clock.advance(1000);
        ids.push(((await start({ key: issued.id, trigger: 'manual' })).json() as RotationRunWire).id);
      }
      const first = (await ctx().request({ method: 'GET', url: '/v1/rotations?limit=2' })).json() as RotationRunListWire;
      expect(first.data.map((run) => run.id)).toEqual([ids[2], ids[1]]);
      const next = (await ctx().request({ method: 'GET', url: `/v1/rotations?limit=2&cursor=${first.nextCursor}` })).json() as RotationRunListWire;
      expect(next.data[0]!.id).toBe(ids[0]);
    });
  });

  describe('security and bad input', () => {
    it('wants a token (401) and the rotation scopes (403) on every route', async () => {
      const reader = await ctx().token(['rotation:read']);
      const keysOnly = await ctx().token(['keys:rotate']);
      const issued = await createKey(ctx(), { owner: unique('scoped') });
      const routes = [
        { method: 'POST' as const, url: '/v1/rotations', body: { key: issued.id } },
        { method: 'GET' as const, url: '/v1/rotations' },
        { method: 'GET' as const, url: '/v1/rotation/stats' },
        { method: 'GET' as const, url: '/v1/rotations/rot_0000000000000000000000' },
        { method: 'POST' as const, url: '/v1/rotations/rot_0000000000000000000000/rollback' },
      ];
      for (const route of routes) {
        expectProblem(await ctx().request({ ...route, token: null }), 401, 'ERR_UNAUTHENTICATED');
        expectProblem(await ctx().request({ ...route, token: keysOnly }), 403, 'ERR_FORBIDDEN');
      }
      expectProblem(await start({ key: issued.id }, reader), 403, 'ERR_FORBIDDEN');
      expectProblem(await ctx().request({ method: 'POST', url: '/v1/rotations/rot_0000000000000000000000/rollback', token: reader }), 403, 'ERR_FORBIDDEN');
      expect((await ctx().request({ method: 'GET', url: '/v1/rotations', token: reader })).statusCode).toBe(200);
      expect((await ctx().rotation.list({ target: issued.id })).data).toHaveLength(0);
    });

    it('refuses bad input with a 4xx naming the field, starting nothing', async () => {
      const issued = await createKey(ctx(), { owner: unique('bad') });
      expectProblem(await start({ key: issued.id, colour: 'red' }), 400, 'ERR_INVALID_REQUEST');
      expectProblem(await start({ key: issued.id, overlap: '-5d' }), 400);
      expectProblem(await start({ key: issued.id, secret: 'a/b' }), 400, 'ERR_INVALID_REQUEST');
      expectProblem(await start({}), 400, 'ERR_INVALID_REQUEST');
      expectProblem(await start({ key: issued.id, trigger: 'schedule' }), 400, 'ERR_INVALID_REQUEST');
      expectProblem(await start({ key: 'key_0000000000000000000000' }), 404, 'ERR_KEY_NOT_FOUND');
      expectProblem(await start({ policy: 'no-such-policy' }), 404, 'ERR_ROTATION_POLICY_NOT_FOUND');
      expectProblem(await start({ secret: 'payments/none' }), 422, 'ERR_ROTATION_NO_POLICY');
      expectProblem(await start({ key: issued.id, reason: '' }), 400, 'ERR_INVALID_REQUEST');
      expectProblem(await start('not an object'), 400);
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/rotations/rot_nope' }), 400, 'ERR_INVALID_REQUEST');
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/rotations/rot_0000000000000000000000' }), 404, 'ERR_ROTATION_RUN_NOT_FOUND');
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/rotations?status=sleeping' }), 400, 'ERR_INVALID_REQUEST');
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/rotations?cursor=bogus' }), 400, 'ERR_INVALID_REQUEST');
      const revoked = await createKey(ctx(), { owner: unique('gone') });
      await ctx().request({ method: 'POST', url: `/v1/keys/${revoked.id}/revoke`, body: { reason: 'x' } });
      expectProblem(await start({ key: revoked.id }), 409, 'ERR_ROTATION_TARGET_INVALID');
      expect((await ctx().rotation.list({ target: issued.id })).data).toHaveLength(0);
    });

    it('refuses a policy whose connector settings are wrong, naming connector.settings', async () => {
      const name = unique('bad-settings');
      const res = await ctx().request({
        method: 'PUT',
        url: `/v1/rotation/policies/${name}`,
        body: { policy: { name, target: { secret: 'payments/x' }, schedule: { every: '30d' }, overlap: '1d', connector: { type: 'command', settings: { args: 'no' } } } },
      });
      const problem = expectProblem(res, 422, 'ERR_ROTATION_POLICY_INVALID');
      expect(problemFields(problem)).toEqual(['policy.connector.settings.args', 'policy.connector.settings.program']);
    });
  });
});
