/** /v1/rotation/policies: create, replace with check-and-set, read, list, delete, refusals and audit. */
import { describe, expect, it } from 'vitest';
import type { DeletedRotationPolicyWire, PutRotationPolicyResultWire, RotationPolicyListWire, RotationPolicyRecordWire } from '../../src/contract/index.js';
import { describeEachDialect } from '../support/databases.js';
import type { TestContext } from '../support/context.js';
import { auditAfter, auditHead, expectProblem, problemFields, unique, useContext } from './helpers.js';

function secretPolicy(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    target: { secret: `payments/${name}/api-key` },
    schedule: { cron: '0 3 * * 1', window: '2h' },
    overlap: '2d',
    connector: { type: 'command', settings: { program: 'stripe-rotator', args: ['--token-path', 'ops/rotator-token'], env: { NOTE: 'hunter2-not-a-secret-store' } } },
    ...extra,
  };
}

function keyPolicy(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name, target: { keys: { owner: 'team-payments' } }, schedule: { every: '30d' }, overlap: '24h', connector: { type: 'keysmith-key' }, ...extra };
}

/** Rows in rotation_policies and audit_events, for "nothing written". */
async function counts(ctx: TestContext): Promise<number[]> {
  const out: number[] = [];
  for (const table of ['rotation_policies', 'audit_events'] as const) {
    const row = await ctx.store.db.selectFrom(table).select((eb) => eb.fn.countAll<number | string>().as('n')).executeTakeFirst();
    out.push(Number(row?.n ?? 0));
  }
  return out;
}

/** The operator's registration of the program the policies name (its file is never run here). */
const STRIPE_ROTATOR = { name: 'stripe-rotator', path: '/opt/rotate/stripe', sha256: 'a'.repeat(64), args: [], allowArgs: ['--token-path', '[a-z0-9/-]+'] };

describeEachDialect('/v1/rotation/policies', (dialect) => {
  const ctx = useContext(dialect, { programs: [STRIPE_ROTATOR] });
  const url = (name: string) => `/v1/rotation/policies/${name}`;
  const put = (name: string, policy: unknown, extra: Record<string, unknown> = {}, token?: string) =>
    ctx().request({ method: 'PUT', url: url(name), body: { policy, ...extra }, ...(token !== undefined ? { token } : {}) });
  const putOk = async (name: string, policy: unknown, extra: Record<string, unknown> = {}, status = 201): Promise<PutRotationPolicyResultWire> => {
    const res = await put(name, policy, extra);
    expect(res.statusCode, res.body).toBe(status);
    return res.json() as PutRotationPolicyResultWire;
  };
  const nothingWritten = async (fn: () => Promise<void>) => {
    const before = await counts(ctx());
    await fn();
    expect(await counts(ctx())).toEqual(before);
  };

  describe('happy', () => {
    it('creates a policy at version 1 with its defaults filled in, and reads it back', async () => {
      const name = unique('stripe');
      const created = await putOk(name, secretPolicy(name));
      expect(created).toMatchObject({ created: true, changes: [], record: { name, version: 1, createdBy: ctx().rootTokenId, updatedBy: ctx().rootTokenId } });
      expect(created.record.policy).toEqual({ ...secretPolicy(name), healthChecks: [], onOverlapEnd: 'keep', onFailure: 'rollback', enabled: true });
      const read = await ctx().request({ method: 'GET', url: url(name) });
      expect(read.statusCode).toBe(200);
      expect(read.json()).toEqual(created.record);
    });

    it('replaces a policy, bumps its version and names the changed fields; the same put again changes nothing', async () => {
      const name = unique('keys');
      await putOk(name, keyPolicy(name));
      const changed = await putOk(name, keyPolicy(name, { schedule: { every: '60d' }, enabled: false }), { version: 1 }, 200);
      expect(changed).toMatchObject({ created: false, changes: ['enabled', 'schedule.every'], record: { version: 2 } });
      const head = await auditHead(ctx());
      const again = await putOk(name, keyPolicy(name, { schedule: { every: '60d' }, enabled: false }), {}, 200);
      expect(again).toMatchObject({ created: false, changes: [], record: { version: 2 } });
      expect(await auditAfter(ctx(), head)).toEqual([]);
    });

    it('lists policies by name and deletes one', async () => {
      const [a, b] = [unique('list-a'), unique('list-b')];
      await putOk(b, keyPolicy(b));
      await putOk(a, secretPolicy(a));
      const list = (await ctx().request({ method: 'GET', url: '/v1/rotation/policies' })).json() as RotationPolicyListWire;
      const names = list.data.map((record) => record.name);
      expect(names).toEqual([...names].sort());
      expect(names).toEqual(expect.arrayContaining([a, b]));
      const deleted = await ctx().request({ method: 'DELETE', url: url(a) });
      expect(deleted.statusCode, deleted.body).toBe(200);
      expect(deleted.json() as DeletedRotationPolicyWire).toEqual({ name: a, deleted: true, version: 1 });
      expectProblem(await ctx().request({ method: 'GET', url: url(a) }), 404, 'ERR_ROTATION_POLICY_NOT_FOUND');
    });

    it('writes created, updated and deleted audit events without any setting value', async () => {
      const name = unique('audited');
      const head = await auditHead(ctx());
      await putOk(name, secretPolicy(name));
      await putOk(name, secretPolicy(name, { overlap: '3d' }), {}, 200);
      await ctx().request({ method: 'DELETE', url: url(name) });
      const events = await auditAfter(ctx(), head);
      expect(events.map((event) => [event.action, event.target, event.data])).toEqual([
        ['rotation.policy.created', `rotation-policy:${name}`, { name, version: 1, target: 'secret', connector: 'command' }],
        ['rotation.policy.updated', `rotation-policy:${name}`, { name, version: 2, target: 'secret', connector: 'command', changes: ['overlap'] }],
        ['rotation.policy.deleted', `rotation-policy:${name}`, { name, version: 2, target: 'secret', connector: 'command' }],
      ]);
      expect(JSON.stringify(events)).not.toContain('hunter2');
      expect(JSON.stringify(events)).not.toContain('rotate.internal');
    });
  });

  describe('errors', () => {
    it('refuses a stale version on put and delete with 409, and version 0 for a policy that exists', async () => {
      const name = unique('cas');
      await putOk(name, keyPolicy(name), { version: 0 });
      await putOk(name, keyPolicy(name, { overlap: '2d' }), { version: 1 }, 200);
      await nothingWritten(async () => {
        expectProblem(await put(name, keyPolicy(name, { overlap: '3d' }), { version: 1 }), 409, 'ERR_ROTATION_POLICY_VERSION_MISMATCH', 'conflict');
        expectProblem(await put(name, keyPolicy(name), { version: 0 }), 409, 'ERR_ROTATION_POLICY_VERSION_MISMATCH');
        expectProblem(await ctx().request({ method: 'DELETE', url: `${url(name)}?version=1` }), 409, 'ERR_ROTATION_POLICY_VERSION_MISMATCH');
        expectProblem(await put(unique('absent'), keyPolicy('x'), { version: 3 }), 400, 'ERR_ROTATION_POLICY_NAME_MISMATCH');
      });
      const missing = unique('absent');
      expectProblem(await put(missing, keyPolicy(missing), { version: 3 }), 409, 'ERR_ROTATION_POLICY_VERSION_MISMATCH');
      expect((await ctx().request({ method: 'DELETE', url: `${url(name)}?version=2` })).statusCode).toBe(200);
    });

    it('lets exactly one of two racing writers with the same version win', async () => {
      const name = unique('race');
      await putOk(name, keyPolicy(name));
      const results = await Promise.all(['2d', '3d', '4d'].map((overlap) => put(name, keyPolicy(name, { overlap }), { version: 1 })));
      expect(results.map((res) => res.statusCode).sort()).toEqual([200, 409, 409]);
      expect(((await ctx().request({ method: 'GET', url: url(name) })).json() as RotationPolicyRecordWire).version).toBe(2);
    });

    it('answers 404 for a policy that does not exist, on read and delete', async () => {
      expectProblem(await ctx().request({ method: 'GET', url: url('no-such-policy') }), 404, 'ERR_ROTATION_POLICY_NOT_FOUND', 'not_found');
      expectProblem(await ctx().request({ method: 'DELETE', url: url('no-such-policy') }), 404, 'ERR_ROTATION_POLICY_NOT_FOUND');
    });

    it('refuses a body naming another policy than the URL', async () => {
      await nothingWritten(async () => {
        expectProblem(await put('one-name', keyPolicy('other-name')), 400, 'ERR_ROTATION_POLICY_NAME_MISMATCH', 'invalid_request');
      });
    });
  });

  describe('security', () => {
    it('wants a token (401) and the rotation scopes (403)', async () => {
      const name = unique('guarded');
      await putOk(name, keyPolicy(name));
      const reader = await ctx().token(['rotation:read']);
      const keysOnly = await ctx().token(['keys:read', 'secrets:write']);
      const head = await auditHead(ctx());
      {
        expectProblem(await ctx().request({ method: 'GET', url: '/v1/rotation/policies', token: null }), 401, 'ERR_UNAUTHENTICATED');
        expectProblem(await put(name, keyPolicy(name, { overlap: '2d' }), {}, null as never), 401, 'ERR_UNAUTHENTICATED');
        expectProblem(await ctx().request({ method: 'GET', url: url(name), token: keysOnly }), 403, 'ERR_FORBIDDEN');
        expectProblem(await put(name, keyPolicy(name, { overlap: '2d' }), {}, reader), 403, 'ERR_FORBIDDEN');
        expectProblem(await ctx().request({ method: 'DELETE', url: url(name), token: reader }), 403, 'ERR_FORBIDDEN');
      }
      // Refusals are audited as such (denied calls); no policy changed and no policy event was written.
      const events = await auditAfter(ctx(), head);
      expect(events.filter((event) => event.action.startsWith('rotation.'))).toEqual([]);
      expect(events.length).toBeGreaterThan(0);
      expect(((await ctx().request({ method: 'GET', url: url(name) })).json() as RotationPolicyRecordWire).version).toBe(1);
      expect((await ctx().request({ method: 'GET', url: url(name), token: reader })).statusCode).toBe(200);
      // rotation:write alone no longer puts a policy: it runs as its author, who needs what it does.
      const writeOnly = await ctx().token(['rotation:write']);
      const refused = expectProblem(await put(name, keyPolicy(name, { overlap: '2d' }), {}, writeOnly), 403, 'ERR_FORBIDDEN');
      expect(refused.detail).toContain('rotation:run');
      const writer = await ctx().token(['rotation:write', 'rotation:run', 'keys:rotate']);
      expect((await put(name, keyPolicy(name, { overlap: '2d' }), {}, writer)).statusCode).toBe(200);
    });

    it('refuses malformed bodies and names with 400, writing nothing', async () => {
      await nothingWritten(async () => {
        const unknownField = expectProblem(await put('bad-body', { ...keyPolicy('bad-body'), retries: 3 }), 400, 'ERR_INVALID_REQUEST');
        expect(JSON.stringify(unknownField)).toContain('retries');
        expectProblem(await put('bad-body', secretPolicy('bad-body', { connector: { type: 'ftp' } })), 400, 'ERR_INVALID_REQUEST');
        expectProblem(await put('bad-body', { name: 'bad-body' }), 400, 'ERR_INVALID_REQUEST');
        expectProblem(await put('Bad_Name', keyPolicy('Bad_Name')), 400, 'ERR_INVALID_REQUEST');
        expectProblem(await ctx().request({ method: 'PUT', url: url('bad-body'), body: keyPolicy('bad-body') }), 400, 'ERR_INVALID_REQUEST');
        expectProblem(await ctx().request({ method: 'PUT', url: url('bad-body'), payload: '{"policy":', headers: { 'content-type': 'application/json' } }), 400);
      });
    });

    it('refuses unsafe policies with 422 naming each field, writing nothing', async () => {
      await nothingWritten(async () => {
        const often = expectProblem(await put('unsafe', keyPolicy('unsafe', { schedule: { every: '30m' } })), 422, 'ERR_ROTATION_POLICY_INVALID', 'policy_violation');
        expect(problemFields(often)).toEqual(['policy.schedule.every']);
        const cron = expectProblem(await put('unsafe', secretPolicy('unsafe', { schedule: { cron: '*/5 * * * *', window: '1m' } })), 422, 'ERR_ROTATION_POLICY_INVALID');
        expect(problemFields(cron)).toEqual(['policy.schedule.cron']);
        const long = expectProblem(await put('unsafe', keyPolicy('unsafe', { schedule: { every: '365d' }, overlap: '91d' })), 422, 'ERR_ROTATION_POLICY_INVALID');
        expect(long.detail).toContain('longer than the key class allows (90d)');
        const pairing = expectProblem(await put('unsafe', keyPolicy('unsafe', { connector: { type: 'postgres' } })), 422, 'ERR_ROTATION_POLICY_INVALID');
        expect(problemFields(pairing)).toEqual(['policy.connector.type']);
        const noTarget = expectProblem(await put('unsafe', keyPolicy('unsafe', { target: {} })), 422, 'ERR_ROTATION_POLICY_INVALID');
        expect(problemFields(noTarget)).toEqual(['policy.target']);
      });
    });

    it('never answers with a field the response schema does not list', async () => {
      const name = unique('fields');
      await putOk(name, secretPolicy(name));
      const record = (await ctx().request({ method: 'GET', url: url(name) })).json() as RotationPolicyRecordWire;
      expect(Object.keys(record).sort()).toEqual(['createdAt', 'createdBy', 'name', 'policy', 'updatedAt', 'updatedBy', 'version']);
      // Settings are stored and answered as given: they name vault paths, and are the operator's to keep clean.
      expect(record.policy.connector.settings).toEqual({ program: 'stripe-rotator', args: ['--token-path', 'ops/rotator-token'], env: { NOTE: 'hunter2-not-a-secret-store' } });
    });
  });
});
