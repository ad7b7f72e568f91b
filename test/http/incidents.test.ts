/** `POST /v1/incidents` and the incident reads: happy paths, refusals, scopes. */
import { describe, expect, it } from 'vitest';
import type { IncidentPlanWire, IncidentRecordWire, IncidentResultWire } from '../../src/contract/index.js';
import { describeEachDialect } from '../support/databases.js';
import { HOUR, auditAfter, auditHead, createKey, expectNothingWritten, expectProblem, getKey, idOf, problemFields, unique, unknownKeyId, useContext, verifyKey } from './helpers.js';

describeEachDialect('POST /v1/incidents', (dialect) => {
  const ctx = useContext(dialect);

  const post = (body: unknown, token?: string) => ctx().request({ method: 'POST', url: '/v1/incidents', body, ...(token ? { token } : {}) });

  describe('happy', () => {
    it('answers a dry run with the plan, capped list and total, and writes nothing', async () => {
      const owner = unique('dry');
      const keys = [await createKey(ctx(), { owner, labels: { team: 'a' } }), await createKey(ctx(), { owner, labels: { team: 'b' } })];
      const res = await expectNothingWritten(ctx(), () => post({ action: 'revoke', select: `owner=${owner}`, reason: 'drill', dryRun: true }));
      expect(res.statusCode, res.body).toBe(200);
      const plan = res.json() as IncidentPlanWire;
      expect(plan).toMatchObject({ dryRun: true, action: 'revoke', select: `owner=${owner}`, total: 2, truncated: false });
      expect(plan.keys.map((k) => k.id).sort()).toEqual(keys.map((k) => k.id).sort());
      expect(Object.keys(plan.keys[0]!).sort()).toEqual(['createdAt', 'env', 'id', 'owner']);
      for (const k of keys) expect((await verifyKey(ctx(), k.key)).code).toBe('VALID');
    });

    it('revokes the selection: 201 with the incident, the next verify answers REVOKED, others stay VALID', async () => {
      const owner = unique('leak');
      const hit = [await createKey(ctx(), { owner, labels: { team: 'pay' } }), await createKey(ctx(), { owner, labels: { team: 'pay' } })];
      const spared = await createKey(ctx(), { owner, labels: { team: 'ops' } });
      for (const k of [...hit, spared]) expect((await verifyKey(ctx(), k.key)).code).toBe('VALID');
      const head = await auditHead(ctx());
      const res = await post({ action: 'revoke', select: `owner=${owner},label=team=pay`, reason: 'pasted in a ticket' });
      expect(res.statusCode, res.body).toBe(201);
      const { incident, keys } = res.json() as IncidentResultWire;
      expect(keys).toBeUndefined();
      expect(incident).toMatchObject({ action: 'revoke', status: 'done', keyCount: 2, plannedCount: 2, reason: 'pasted in a ticket', createdBy: ctx().rootTokenId, overlap: null, failure: null });
      for (const k of hit) expect(await verifyKey(ctx(), k.key)).toMatchObject({ valid: false, code: 'REVOKED' });
      expect((await verifyKey(ctx(), spared.key)).code).toBe('VALID');
      expect(await getKey(ctx(), hit[0]!.id)).toMatchObject({ status: 'revoked', revokeReason: 'pasted in a ticket' });

      const events = await auditAfter(ctx(), head);
      const perKey = events.filter((e) => e.action === 'key.revoked');
      expect(perKey.map((e) => e.target).sort()).toEqual(hit.map((k) => k.id).sort());
      for (const e of perKey) expect(e).toMatchObject({ actor: ctx().rootTokenId, data: { reason: 'pasted in a ticket', incident: incident.id } });
      expect(events.filter((e) => e.target === incident.id).map((e) => e.action)).toEqual(['incident.opened', 'incident.closed']);

      const one = await ctx().request({ method: 'GET', url: `/v1/incidents/${incident.id}` });
      expect(one.statusCode, one.body).toBe(200);
      expect(one.json()).toEqual(incident);
      const list = await ctx().request({ method: 'GET', url: '/v1/incidents?limit=50' });
      expect(list.statusCode, list.body).toBe(200);
      expect((list.json().data as IncidentRecordWire[]).map((i) => i.id)).toContain(incident.id);
    });

    it('rotates the selection: 201 with every new key once, old keys VALID with rotation info', async () => {
      const owner = unique('rot');
      const olds = [await createKey(ctx(), { owner, scopes: ['a:b'] }), await createKey(ctx(), { owner, scopes: ['a:b'] })];
      const res = await post({ action: 'rotate', select: `owner=${owner}`, reason: 'vendor breach', overlap: '1h' });
      expect(res.statusCode, res.body).toBe(201);
      expect(res.headers['cache-control']).toBe('no-store');
      const { incident, keys } = res.json() as IncidentResultWire;
      expect(incident).toMatchObject({ action: 'rotate', status: 'done', keyCount: 2, overlap: '1h' });
      expect(keys).toHaveLength(2);
      const graceEndsAt = new Date(ctx().clock.now() + HOUR).toISOString();
      for (const old of olds) {
        const next = keys!.find((k) => k.replaces === old.id)!;
        expect(idOf(next.key)).toBe(next.id);
        expect(await verifyKey(ctx(), next.key, { scopes: ['a:b'] })).toMatchObject({ valid: true, code: 'VALID', keyId: next.id, owner });
        expect(await verifyKey(ctx(), old.key)).toMatchObject({ valid: true, code: 'VALID', rotation: { replacedBy: next.id, graceEndsAt } });
      }
      // The new keys were shown once: nowhere in the audit log or the incident.
      const text = JSON.stringify(await auditAfter(ctx(), 0)) + JSON.stringify(incident);
      for (const k of keys!) expect(text).not.toContain(k.key);
    });

    it('records an empty incident when nothing matches', async () => {
      const res = await post({ action: 'revoke', select: `key=${unknownKeyId()}`, reason: 'false alarm' });
      expect(res.statusCode, res.body).toBe(201);
      expect(res.json().incident).toMatchObject({ keyCount: 0, plannedCount: 0, status: 'done' });
    });

    it('is in the OpenAPI document', async () => {
      const doc = (await ctx().app.inject({ method: 'GET', url: '/openapi.json' })).json() as { paths: Record<string, Record<string, unknown>> };
      expect(Object.keys(doc.paths['/v1/incidents'] ?? {})).toEqual(expect.arrayContaining(['post', 'get']));
      expect(doc.paths['/v1/incidents/{id}']).toHaveProperty('get');
    });
  });

  describe('errors', () => {
    it.each([
      ['an empty selector', { action: 'revoke', select: '   ', reason: 'x' }, 'ERR_INCIDENT_SELECTOR_INVALID'],
      ['an unknown selector field', { action: 'revoke', select: 'colour=red', reason: 'x' }, 'ERR_INCIDENT_SELECTOR_INVALID'],
      ['a bad time', { action: 'rotate', select: 'createdBefore=yesterday', reason: 'x' }, 'ERR_INCIDENT_SELECTOR_INVALID'],
      ['a missing select', { action: 'revoke', reason: 'x' }, 'ERR_INVALID_REQUEST'],
      ['an empty select', { action: 'revoke', select: '', reason: 'x' }, 'ERR_INVALID_REQUEST'],
      ['a missing reason', { action: 'revoke', select: 'owner=a' }, 'ERR_INVALID_REQUEST'],
      ['an empty reason', { action: 'revoke', select: 'owner=a', reason: '' }, 'ERR_INVALID_REQUEST'],
      ['an unknown action', { action: 'delete', select: 'owner=a', reason: 'x' }, 'ERR_INVALID_REQUEST'],
      ['an unknown field', { action: 'revoke', select: 'owner=a', reason: 'x', force: true }, 'ERR_INVALID_REQUEST'],
      ['an overlap on revoke', { action: 'revoke', select: 'owner=a', reason: 'x', overlap: '1h' }, 'ERR_INVALID_REQUEST'],
      ['a malformed overlap', { action: 'rotate', select: 'owner=a', reason: 'x', overlap: 'soon' }, 'ERR_INVALID_DURATION'],
      ['a string dryRun', { action: 'revoke', select: 'owner=a', reason: 'x', dryRun: 'yes' }, 'ERR_INVALID_REQUEST'],
      ['an array body', [], 'ERR_INVALID_REQUEST'],
    ])('answers 400 to %s and writes nothing', async (_name, body, error) => {
      const res = await expectNothingWritten(ctx(), () => post(body));
      expectProblem(res, 400, error, 'invalid_request');
    });

    it('names the select field when the selector is wrong', async () => {
      const body = expectProblem(await post({ action: 'revoke', select: 'owner=a,,env=live', reason: 'x' }), 400, 'ERR_INCIDENT_SELECTOR_INVALID');
      expect(problemFields(body)).toEqual(['select']);
      expect(body.detail).toMatch(/empty criterion/);
    });

    it('answers 422 to an overlap longer than a key may live, on a dry run too', async () => {
      for (const dryRun of [true, false]) {
        const res = await expectNothingWritten(ctx(), () => post({ action: 'rotate', select: 'owner=a', reason: 'x', overlap: '400d', dryRun }));
        expectProblem(res, 422, 'ERR_TTL_TOO_LONG');
      }
    });

    it('never echoes a key given where a key id belongs', async () => {
      const key = await createKey(ctx(), { owner: unique('echo') });
      const res = await post({ action: 'revoke', select: `key=${key.key}`, reason: 'x' });
      const body = expectProblem(res, 400, 'ERR_INCIDENT_SELECTOR_INVALID');
      expect(res.body).not.toContain(key.key);
      expect(body.detail).toMatch(/never a key itself/);
      expect((await verifyKey(ctx(), key.key)).code).toBe('VALID');
    });

    it('answers 404 to an unknown incident and 400 to a malformed id or cursor', async () => {
      expectProblem(await ctx().request({ method: 'GET', url: `/v1/incidents/inc_${'A'.repeat(22)}` }), 404, 'ERR_INCIDENT_NOT_FOUND');
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/incidents/key_nope' }), 400, 'ERR_INVALID_REQUEST');
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/incidents?cursor=garbage' }), 400, 'ERR_INVALID_REQUEST');
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/incidents?limit=0' }), 400, 'ERR_INVALID_REQUEST');
    });
  });

  describe('security', () => {
    it('answers 401 without a token, writing nothing but auth.failed', async () => {
      const head = await auditHead(ctx());
      const res = await ctx().request({ method: 'POST', url: '/v1/incidents', token: null, body: { action: 'revoke', select: 'env=live', reason: 'x' } });
      expectProblem(res, 401, 'ERR_UNAUTHENTICATED');
      expect((await auditAfter(ctx(), head)).map((e) => e.action)).toEqual(['auth.failed']);
    });

    it('needs incidents:write to act and incidents:read to read; keys:revoke alone is not enough', async () => {
      const owner = unique('scoped');
      const victim = await createKey(ctx(), { owner });
      const body = { action: 'revoke', select: `owner=${owner}`, reason: 'x' };
      for (const scopes of [['incidents:read'], ['keys:revoke', 'keys:rotate', 'keys:read']]) {
        const token = await ctx().token(scopes);
        expectProblem(await post(body, token), 403, 'ERR_FORBIDDEN');
        expectProblem(await post({ ...body, dryRun: true }, token), 403, 'ERR_FORBIDDEN');
      }
      expect((await verifyKey(ctx(), victim.key)).code).toBe('VALID');
      const writer = await ctx().token(['incidents:write']);
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/incidents', token: writer }), 403, 'ERR_FORBIDDEN');
      const done = await post(body, writer);
      expect(done.statusCode, done.body).toBe(201);
      const reader = await ctx().token(['incidents:read']);
      const read = await ctx().request({ method: 'GET', url: `/v1/incidents/${done.json().incident.id}`, token: reader });
      expect(read.statusCode, read.body).toBe(200);
      expect((await verifyKey(ctx(), victim.key)).code).toBe('REVOKED');
    });

    it('never touches management tokens, whatever the selector', async () => {
      const token = await ctx().token(['incidents:write']);
      const res = await post({ action: 'revoke', select: `key=${idOf(token)},key=${ctx().rootTokenId}`, reason: 'x' }, token);
      expect(res.statusCode, res.body).toBe(201);
      expect(res.json().incident.keyCount).toBe(0);
      expect((await ctx().request({ method: 'GET', url: '/v1/incidents?limit=1', token: ctx().rootToken })).statusCode).toBe(200);
    });
  });
});
