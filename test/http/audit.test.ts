import { describe, expect, it } from 'vitest';
import type { AuditEventWire } from '../../src/contract/index.js';
import type { AuditEventsTable } from '../../src/store/index.js';
import { describeEachDialect } from '../support/databases.js';
import { HOUR, auditAfter, auditHead, expectProblem, idOf, iso, useContext } from './helpers.js';

const GENESIS = '0'.repeat(64);

describeEachDialect('audit API', (dialect) => {
  const ctx = useContext(dialect);

  const allEvents = () => auditAfter(ctx(), 0);
  const verifyChain = async () => {
    const res = await ctx().request({ method: 'POST', url: '/v1/audit/verify' });
    expect(res.statusCode, res.body).toBe(200);
    return res.json() as { ok: boolean; events: number; headSeq: number; problem?: { seq: number; kind: string; message: string } };
  };

  describe('events for every state change', () => {
    it('names the actor, action, target and request id of create, update, disable, enable, rotate, revoke, retire and token create', async () => {
      const token = await ctx().token(['*']);
      const actor = idOf(token);
      const head = await auditHead(ctx());
      const secrets: string[] = [token];
      const expected: Array<[string, string, string]> = [];
      const call = async (method: 'POST' | 'PATCH', url: string, body: unknown, status: number) => {
        const res = await ctx().request({ method, url, body, token });
        expect(res.statusCode, res.body).toBe(status);
        return { body: res.json(), requestId: res.headers['x-request-id'] as string };
      };

      const created = await call('POST', '/v1/keys', { owner: 'audit-trail', scopes: ['a:b', 'c:d'] }, 201);
      secrets.push(created.body.key);
      const id = created.body.id as string;
      expected.push(['key.issued', id, created.requestId]);
      const updated = await call('PATCH', `/v1/keys/${id}`, { scopes: ['a:b'], labels: { team: 'x' } }, 200);
      expected.push(['key.updated', id, updated.requestId]);
      const disabled = await call('POST', `/v1/keys/${id}/disable`, {}, 200);
      expected.push(['key.disabled', id, disabled.requestId]);
      const enabled = await call('POST', `/v1/keys/${id}/enable`, {}, 200);
      expected.push(['key.enabled', id, enabled.requestId]);
      const rotated = await call('POST', `/v1/keys/${id}/rotate`, { overlap: '1h' }, 201);
      secrets.push(rotated.body.key);
      const successor = rotated.body.id as string;
      expected.push(['key.rotated', id, rotated.requestId], ['key.issued', successor, rotated.requestId]);
      const revoked = await call('POST', `/v1/keys/${successor}/revoke`, { reason: 'test' }, 200);
      expected.push(['key.revoked', successor, revoked.requestId]);
      const retired = await call('POST', `/v1/keys/${successor}/retire`, {}, 200);
      expected.push(['key.retired', successor, retired.requestId]);
      const issued = await call('POST', '/v1/tokens', { scopes: ['keys:read'] }, 201);
      secrets.push(issued.body.key);
      expected.push(['token.issued', issued.body.id, issued.requestId]);

      const events = await auditAfter(ctx(), head);
      expect(events.map((event) => [event.action, event.target, event.requestId])).toEqual(expected);
      for (const event of events) {
        expect(event.actor).toBe(actor);
        expect(event.sourceIp).toBe('127.0.0.1');
        expect(event.time).toBe(iso(ctx().clock.now()));
      }
      expect(events.find((event) => event.action === 'key.revoked')!.data).toMatchObject({ reason: 'test' });
      expect(events.find((event) => event.action === 'key.updated')!.data).toMatchObject({ changed: { scopes: ['a:b'], labels: { team: 'x' } } });
      const text = JSON.stringify(events);
      for (const secret of secrets) expect(text).not.toContain(secret);
      expect(text).not.toMatch(/key_hash|"hash_version"/);
    });

    it('writes no event for a refused change', async () => {
      const head = await auditHead(ctx());
      const res = await ctx().request({ method: 'POST', url: '/v1/keys', body: { owner: 'x', ttl: '999d' } });
      expect(res.statusCode).toBe(422);
      expect(await auditAfter(ctx(), head)).toEqual([]);
    });
  });

  describe('GET /v1/audit', () => {
    it('chains the events: each prevHash is the hash of the one before', async () => {
      const events = await allEvents();
      expect(events.length).toBeGreaterThan(5);
      expect(events[0]!.seq).toBe(1);
      expect(events[0]!.prevHash).toBe(GENESIS);
      for (let i = 1; i < events.length; i += 1) {
        expect(events[i]!.seq).toBe(events[i - 1]!.seq + 1);
        expect(events[i]!.prevHash).toBe(events[i - 1]!.hash);
        expect(events[i]!.hash).toMatch(/^[0-9a-f]{64}$/);
      }
      expect(new Set(events.map((event) => event.hash)).size).toBe(events.length);
    });

    it('pages with after and limit, ending with a null cursor', async () => {
      const everything = await allEvents();
      const seen: AuditEventWire[] = [];
      let after = 0;
      for (let guard = 0; guard < 1000; guard += 1) {
        const res = await ctx().request({ method: 'GET', url: `/v1/audit?after=${after}&limit=2` });
        expect(res.statusCode).toBe(200);
        const page = res.json() as { data: AuditEventWire[]; nextCursor: number | null };
        expect(page.data.length).toBeLessThanOrEqual(2);
        seen.push(...page.data);
        if (page.nextCursor === null) break;
        expect(page.nextCursor).toBe(page.data[page.data.length - 1]!.seq);
        after = page.nextCursor;
      }
      expect(seen.map((event) => event.seq)).toEqual(everything.map((event) => event.seq));
      const last = everything[everything.length - 1]!.seq;
      const beyond = await ctx().request({ method: 'GET', url: `/v1/audit?after=${last}` });
      expect(beyond.json()).toEqual({ data: [], nextCursor: null });
    });

    it('filters by action, target and actor', async () => {
      const res = await ctx().request({ method: 'POST', url: '/v1/keys', body: { owner: 'filtered' } });
      const id = res.json().id as string;
      await ctx().request({ method: 'POST', url: `/v1/keys/${id}/revoke`, body: {} });
      const byTarget = (await ctx().request({ method: 'GET', url: `/v1/audit?target=${id}` })).json().data as AuditEventWire[];
      expect(byTarget.map((event) => event.action)).toEqual(['key.issued', 'key.revoked']);
      const byAction = (await ctx().request({ method: 'GET', url: `/v1/audit?action=key.revoked&target=${id}` })).json().data as AuditEventWire[];
      expect(byAction).toHaveLength(1);
      const byActor = (await ctx().request({ method: 'GET', url: `/v1/audit?actor=${ctx().rootTokenId}&target=${id}` })).json().data;
      expect(byActor).toHaveLength(2);
    });

    it.each(['limit=0', 'limit=abc', 'limit=1001', 'after=-1', 'after=abc', 'after=99999999999999', 'sort=desc'])('refuses ?%s with 400', async (query) => {
      expectProblem(await ctx().request({ method: 'GET', url: `/v1/audit?${query}` }), 400, 'ERR_INVALID_REQUEST', 'invalid_request');
    });

    it('answers 401 without a token and 403 without audit:read', async () => {
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/audit', token: null }), 401, 'ERR_UNAUTHENTICATED');
      const token = await ctx().token(['keys:read', 'keys:create']);
      expect(expectProblem(await ctx().request({ method: 'GET', url: '/v1/audit', token }), 403, 'ERR_FORBIDDEN').detail).toContain('audit:read');
      const reader = await ctx().token(['audit:read']);
      expect((await ctx().request({ method: 'GET', url: '/v1/audit?limit=1', token: reader })).statusCode).toBe(200);
    });
  });

  describe('POST /v1/audit/verify', () => {
    it('answers ok for an untouched chain', async () => {
      const result = await verifyChain();
      expect(result.ok).toBe(true);
      expect(result.headSeq).toBe(await auditHead(ctx()));
      expect(result.events).toBe(result.headSeq);
      expect(result.problem).toBeUndefined();
    });

    it("names an event whose data was edited, and is ok again once it is restored", async () => {
      const target = 3;
      const original = await ctx().store.db.selectFrom('audit_events').selectAll().where('seq', '=', target).executeTakeFirstOrThrow();
      await ctx().store.db.updateTable('audit_events').set({ data: JSON.stringify({ owner: 'mallory' }) }).where('seq', '=', target).execute();
      const result = await verifyChain();
      expect(result.ok).toBe(false);
      expect(result.problem).toMatchObject({ seq: target, kind: 'edited' });
      expect(result.problem!.message).toContain(`#${target}`);
      await ctx().store.db.updateTable('audit_events').set({ data: original.data }).where('seq', '=', target).execute();
      expect((await verifyChain()).ok).toBe(true);
    });

    it('names an event whose actor was edited', async () => {
      const target = 2;
      const original = await ctx().store.db.selectFrom('audit_events').selectAll().where('seq', '=', target).executeTakeFirstOrThrow();
      await ctx().store.db.updateTable('audit_events').set({ actor: 'key_someoneElse000000000000' }).where('seq', '=', target).execute();
      expect((await verifyChain()).problem).toMatchObject({ seq: target, kind: 'edited' });
      await ctx().store.db.updateTable('audit_events').set({ actor: original.actor }).where('seq', '=', target).execute();
      expect((await verifyChain()).ok).toBe(true);
    });

    it('names the gap left by a deleted event', async () => {
      const target = 4;
      const original = await ctx().store.db.selectFrom('audit_events').selectAll().where('seq', '=', target).executeTakeFirstOrThrow();
      await ctx().store.db.deleteFrom('audit_events').where('seq', '=', target).execute();
      const result = await verifyChain();
      expect(result.ok).toBe(false);
      expect(result.problem).toMatchObject({ seq: target, kind: 'deleted' });
      expect(result.problem!.message).toContain(`#${target}`);
      await restore(original);
      expect((await verifyChain()).ok).toBe(true);
    });

    it('notices when the newest event is deleted', async () => {
      const head = await auditHead(ctx());
      const original = await ctx().store.db.selectFrom('audit_events').selectAll().where('seq', '=', head).executeTakeFirstOrThrow();
      await ctx().store.db.deleteFrom('audit_events').where('seq', '=', head).execute();
      const result = await verifyChain();
      expect(result.ok).toBe(false);
      expect(result.problem!.seq).toBe(head);
      await restore(original);
      expect((await verifyChain()).ok).toBe(true);
    });

    it('notices two events swapped', async () => {
      const [a, b] = await ctx().store.db.selectFrom('audit_events').selectAll().where('seq', 'in', [5, 6]).orderBy('seq').execute();
      await ctx().store.db.deleteFrom('audit_events').where('seq', 'in', [5, 6]).execute();
      await restore({ ...b!, seq: 5 });
      await restore({ ...a!, seq: 6 });
      const result = await verifyChain();
      expect(result.ok).toBe(false);
      expect(result.problem!.seq).toBe(5);
      await ctx().store.db.deleteFrom('audit_events').where('seq', 'in', [5, 6]).execute();
      await restore(a!);
      await restore(b!);
      expect((await verifyChain()).ok).toBe(true);
    });

    it('keeps the chain valid as new events are appended after a check', async () => {
      ctx().clock.advance(HOUR);
      await ctx().request({ method: 'POST', url: '/v1/keys', body: { owner: 'after-check' } });
      expect((await verifyChain()).ok).toBe(true);
    });

    it('answers 401 without a token and 403 without audit:read', async () => {
      expectProblem(await ctx().request({ method: 'POST', url: '/v1/audit/verify', token: null }), 401, 'ERR_UNAUTHENTICATED');
      const token = await ctx().token(['keys:read']);
      expectProblem(await ctx().request({ method: 'POST', url: '/v1/audit/verify', token }), 403, 'ERR_FORBIDDEN', 'forbidden');
    });
  });

  async function restore(row: AuditEventsTable): Promise<void> {
    await ctx().store.db.insertInto('audit_events').values({ ...row, seq: Number(row.seq) }).execute();
  }
});
