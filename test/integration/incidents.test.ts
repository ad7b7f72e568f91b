/**
 * Break-glass incidents on a real database: plan, mass revoke, mass rotate. Small batch sizes
 * force several transactions, so batching is exercised on both dialects.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IncidentService, KeyService, parseSelector, type IssuedKey } from '../../src/keys/index.js';
import { createKeyHasher, secureRandom } from '../../src/crypto/index.js';
import { AppError } from '../../src/shared/errors.js';
import { TEST_MASTER_KEY, createTestContext, type TestContext } from '../support/context.js';
import { describeEachDialect } from '../support/databases.js';
import { INJECTED_FAULT, failUpdatesOf, literal } from '../support/db-faults.js';

const actor = { actor: 'key_incidenttester000000000', requestId: 'req_inc', sourceIp: '127.0.0.1' };

describeEachDialect('incidents on a real database', (dialect) => {
  let ctx: TestContext;
  /** The same service with batches of 3, so a handful of keys spans several transactions. */
  let incidents: IncidentService;

  beforeAll(async () => {
    ctx = await createTestContext(dialect);
    incidents = new IncidentService({ db: ctx.store.db, audit: ctx.audit, dialect: ctx.store.dialect, clock: ctx.clock, random: secureRandom, keys: ctx.keys, batch: { revoke: 3, rotate: 2 } });
  });
  afterAll(async () => {
    await ctx.close();
  });

  const issue = (owner: string, labels: Record<string, string> = {}, env: 'live' | 'test' = 'live'): Promise<IssuedKey> =>
    ctx.keys.issue(actor, { owner, labels, env, scopes: ['orders:read'] });

  const count = async (table: 'api_keys' | 'audit_events' | 'incidents') =>
    Number((await ctx.store.db.selectFrom(table).select((eb) => eb.fn.countAll<number | string>().as('n')).executeTakeFirstOrThrow()).n);

  const events = async (after: number) =>
    (await ctx.store.db.selectFrom('audit_events').selectAll().where('seq', '>', after).orderBy('seq').execute()).map((row) => ({ ...row, data: JSON.parse(row.data) as Record<string, unknown> }));

  const head = async () => Number((await ctx.store.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq);

  it('plans what a selector picks (AND across fields, OR within one) and changes nothing', async () => {
    const a1 = await issue('plan-a', { team: 'pay' });
    const a2 = await issue('plan-a', { team: 'bill' });
    const a3 = await issue('plan-a', { team: 'pay' }, 'test');
    const b1 = await issue('plan-b', { team: 'pay' });
    const before = { keys: await count('api_keys'), audit: await count('audit_events'), incidents: await count('incidents') };
    const plan = await incidents.plan('revoke', 'owner=plan-a,label=team=pay,env=live');
    expect(plan.keys.map((k) => k.id)).toEqual([a1.record.id]);
    const either = await incidents.plan('revoke', 'owner=plan-a,owner=plan-b,label=team=pay,label=team=bill,env=live');
    expect(either.keys.map((k) => k.id).sort()).toEqual([a1.record.id, a2.record.id, b1.record.id].sort());
    const byId = await incidents.plan('rotate', `key=${a3.record.id},key=${b1.record.id}`);
    expect(byId.total).toBe(2);
    expect(byId.keys.find((k) => k.id === a3.record.id)).toEqual({ id: a3.record.id, owner: 'plan-a', env: 'test', createdAt: a3.record.createdAt });
    expect({ keys: await count('api_keys'), audit: await count('audit_events'), incidents: await count('incidents') }).toEqual(before);
  });

  it('picks keys created before a time, and never management tokens', async () => {
    const old = await issue('plan-time');
    ctx.clock.advance(60_000);
    const cutoff = new Date(ctx.clock.now()).toISOString();
    ctx.clock.advance(60_000);
    await issue('plan-time');
    const plan = await incidents.plan('revoke', `owner=plan-time,createdBefore=${cutoff}`);
    expect(plan.keys.map((k) => k.id)).toEqual([old.record.id]);
    const tokens = await incidents.plan('revoke', `key=${ctx.rootTokenId}`);
    expect(tokens.total).toBe(0);
    const root = await incidents.plan('revoke', 'owner=root');
    expect(root.total).toBe(0);
  });

  it('refuses an empty or malformed selector with a 400 and writes nothing', async () => {
    const before = await head();
    for (const select of ['', 'owner=', 'colour=red']) {
      await expect(incidents.revoke(actor, select, 'x')).rejects.toMatchObject({ code: 'ERR_INCIDENT_SELECTOR_INVALID', status: 400 });
    }
    await expect(incidents.plan('revoke', ' ')).rejects.toBeInstanceOf(AppError);
    expect(await head()).toBe(before);
  });

  it('revokes the selection: REVOKED on the next verify, others VALID, one incident, one event per key', async () => {
    const chosen = await Promise.all(Array.from({ length: 7 }, () => issue('breach', { team: 'leaky' })));
    const spared = await issue('breach', { team: 'tight' });
    const other = await issue('bystander', { team: 'leaky' });
    // Cache every key first: revocation must reach the verify cache, not just the database.
    for (const k of [...chosen, spared, other]) expect((await ctx.keys.verify({ key: k.key })).code).toBe('VALID');
    const already = chosen[6]!;
    await ctx.keys.revoke(actor, already.record.id, 'earlier');
    const seq = await head();
    const progress: Array<[number, number]> = [];
    const { incident } = await incidents.revoke(actor, 'owner=breach,label=team=leaky', 'leaked in a public repo', { onProgress: (d, t) => progress.push([d, t]) });

    expect(incident).toMatchObject({ action: 'revoke', status: 'done', keyCount: 6, plannedCount: 6, select: 'owner=breach,label=team=leaky', reason: 'leaked in a public repo', overlap: null, createdBy: actor.actor });
    expect(incident.id).toMatch(/^inc_[0-9A-Za-z]{22}$/);
    expect(incident.finishedAt).not.toBeNull();
    expect(progress).toEqual([[0, 6], [3, 6], [6, 6]]);
    for (const k of chosen) expect((await ctx.keys.verify({ key: k.key })).code).toBe('REVOKED');
    expect((await ctx.keys.verify({ key: spared.key })).code).toBe('VALID');
    expect((await ctx.keys.verify({ key: other.key })).code).toBe('VALID');
    const record = await ctx.keys.get(chosen[0]!.record.id);
    expect(record).toMatchObject({ status: 'revoked', revokeReason: 'leaked in a public repo' });
    expect((await ctx.keys.get(already.record.id)).revokeReason).toBe('earlier');

    const written = await events(seq);
    const revoked = written.filter((e) => e.action === 'key.revoked');
    expect(revoked.map((e) => e.target).sort()).toEqual(chosen.slice(0, 6).map((k) => k.record.id).sort());
    for (const e of revoked) expect(e.data).toEqual({ reason: 'leaked in a public repo', incident: incident.id });
    expect(written.filter((e) => e.target === incident.id).map((e) => e.action)).toEqual(['incident.opened', 'incident.closed']);
    expect(written).toHaveLength(8);
    const dump = JSON.stringify(written);
    for (const k of chosen) expect(dump).not.toContain(k.key);
    expect(await ctx.audit.verify(ctx.store.db)).toMatchObject({ ok: true });
    expect(await incidents.get(incident.id)).toEqual(incident);
  });

  it('a second revoke of the same selection finds nothing and records an empty incident', async () => {
    const { incident } = await incidents.revoke(actor, 'owner=breach,label=team=leaky', 'again');
    expect(incident).toMatchObject({ status: 'done', keyCount: 0, plannedCount: 0 });
  });

  it('rotates the selection: successors with the same settings and labels, old keys VALID in the overlap', async () => {
    const chosen = await Promise.all(Array.from({ length: 5 }, (_, i) => ctx.keys.issue(actor, { owner: 'rotor', labels: { team: 'spin', n: String(i) }, scopes: ['a:b', 'c:d'], ttl: '10d' })));
    const disabled = await issue('rotor', { team: 'spin' });
    await ctx.keys.disable(actor, disabled.record.id);
    const superseded = await issue('rotor', { team: 'spin' });
    await ctx.keys.rotate(actor, superseded.record.id, {});
    const seq = await head();
    const { incident, keys } = await incidents.rotate(actor, 'owner=rotor,label=team=spin', 'vendor breach', '2h');

    expect(incident).toMatchObject({ action: 'rotate', status: 'done', keyCount: 6, plannedCount: 6, overlap: '2h' });
    // Five chosen plus the successor of the key rotated before; never the disabled or the superseded one.
    const replaced = keys.map((k) => k.replaces);
    expect(replaced).not.toContain(disabled.record.id);
    expect(replaced).not.toContain(superseded.record.id);
    for (const k of chosen) expect(replaced).toContain(k.record.id);
    const graceEndsAt = new Date(ctx.clock.now() + 2 * 3_600_000).toISOString();
    for (const [i, old] of chosen.entries()) {
      const next = keys.find((k) => k.replaces === old.record.id)!;
      expect(next.id).toMatch(/^key_/);
      expect(await ctx.keys.verify({ key: next.key })).toMatchObject({ valid: true, code: 'VALID', keyId: next.id, owner: 'rotor' });
      expect(await ctx.keys.verify({ key: old.key })).toMatchObject({ valid: true, code: 'VALID', rotation: { replacedBy: next.id, graceEndsAt } });
      const record = await ctx.keys.get(next.id);
      expect(record).toMatchObject({ replaces: old.record.id, scopes: ['a:b', 'c:d'], labels: { team: 'spin', n: String(i) }, owner: 'rotor', status: 'active' });
      expect(record.expiresAt).toBe(new Date(ctx.clock.now() + 10 * 86_400_000).toISOString());
      expect(await ctx.keys.get(old.record.id)).toMatchObject({ status: 'superseded', replacedBy: next.id, graceEndsAt });
    }
    const written = await events(seq);
    expect(written.filter((e) => e.action === 'key.rotated')).toHaveLength(6);
    expect(written.filter((e) => e.action === 'key.issued')).toHaveLength(6);
    expect(written.find((e) => e.action === 'key.rotated')!.data).toMatchObject({ overlap: '2h', graceEndsAt, reason: 'vendor breach', incident: incident.id });
    const dump = JSON.stringify(written);
    for (const k of keys) expect(dump).not.toContain(k.key);
    expect(await ctx.audit.verify(ctx.store.db)).toMatchObject({ ok: true });

    ctx.clock.advance(2 * 3_600_000 + 1);
    expect((await ctx.keys.verify({ key: chosen[0]!.key })).code).toBe('EXPIRED');
    expect((await ctx.keys.verify({ key: keys[0]!.key })).code).toBe('VALID');
  });

  it('refuses an overlap longer than a key may live, before writing anything', async () => {
    const before = await head();
    await expect(incidents.revoke(actor, 'owner=rotor', '')).rejects.toMatchObject({ code: 'ERR_INVALID_REQUEST' });
    await expect(incidents.rotate(actor, 'owner=rotor', 'x'.repeat(501), '1h')).rejects.toMatchObject({ code: 'ERR_INVALID_REQUEST' });
    await expect(incidents.rotate(actor, 'owner=rotor', 'x', '400d')).rejects.toMatchObject({ code: 'ERR_TTL_TOO_LONG' });
    await expect(incidents.rotate(actor, 'owner=rotor', 'x', 'soon')).rejects.toMatchObject({ code: 'ERR_INVALID_DURATION' });
    expect(await head()).toBe(before);
  });

  it('reaches another server through the change feed: revoked and rotated keys are seen there', async () => {
    const other = new KeyService({ db: ctx.store.db, audit: ctx.audit, dialect: ctx.store.dialect, clock: ctx.clock, random: secureRandom, hasher: createKeyHasher(TEST_MASTER_KEY), config: ctx.keys.config });
    await other.changes.poll();
    const revokeMe = await Promise.all(Array.from({ length: 4 }, () => issue('feed-revoke')));
    const rotateMe = await issue('feed-rotate');
    for (const k of [...revokeMe, rotateMe]) expect((await other.verify({ key: k.key })).code).toBe('VALID');
    await incidents.revoke(actor, 'owner=feed-revoke', 'seen elsewhere');
    const { keys } = await incidents.rotate(actor, 'owner=feed-rotate', 'seen elsewhere', '1h');
    await other.changes.poll();
    for (const k of revokeMe) expect((await other.verify({ key: k.key })).code).toBe('REVOKED');
    expect(await other.verify({ key: rotateMe.key })).toMatchObject({ code: 'VALID', rotation: { replacedBy: keys[0]!.id } });
    await other.usage.stop();
  });

  describe('when a batch fails', () => {
    /** The key service, with one method made to fail on its nth call. */
    const failing = (method: 'successorOf' | 'invalidate', nth: number, error: Error): KeyService => {
      let calls = 0;
      const keys = ctx.keys;
      return {
        overlapOf: (text: string | undefined) => keys.overlapOf(text),
        successorOf: (...args: Parameters<KeyService['successorOf']>) => {
          if (method === 'successorOf' && ++calls === nth) throw error;
          return keys.successorOf(...args);
        },
        invalidate: (ids: Iterable<string>) => {
          if (method === 'invalidate' && ++calls === nth) throw error;
          keys.invalidate(ids);
        },
      } as unknown as KeyService;
    };
    const serviceWith = (keys: KeyService) => new IncidentService({ db: ctx.store.db, audit: ctx.audit, dialect: ctx.store.dialect, clock: ctx.clock, random: secureRandom, keys, batch: { revoke: 3, rotate: 2 } });

    it('marks a revoke failed, keeps what committed, and says nothing of internals', async () => {
      const chosen = await Promise.all(Array.from({ length: 7 }, () => issue('fail-revoke')));
      const seq = await head();
      await expect(serviceWith(failing('invalidate', 2, new Error('driver said something private'))).revoke(actor, 'owner=fail-revoke', 'x')).rejects.toThrow('driver said something private');
      const opened = (await events(seq)).find((e) => e.action === 'incident.opened')!;
      const record = await incidents.get(opened.target!);
      expect(record).toMatchObject({ status: 'failed', keyCount: 6, plannedCount: 7, failure: 'internal error' });
      expect(record.finishedAt).not.toBeNull();
      const revoked = (await events(seq)).filter((e) => e.action === 'key.revoked');
      expect(revoked).toHaveLength(6);
      expect((await events(seq)).at(-1)).toMatchObject({ action: 'incident.closed', data: { status: 'failed', keys: 6 } });
      // Running the same selector again finishes the job.
      const again = await incidents.revoke(actor, 'owner=fail-revoke', 'x');
      expect(again.incident).toMatchObject({ status: 'done', keyCount: 1 });
      for (const k of chosen) expect((await ctx.keys.get(k.record.id)).status).toBe('revoked');
      expect(await ctx.audit.verify(ctx.store.db)).toMatchObject({ ok: true });
    });

    it('hands over the keys a failed rotation already minted, marked failed', async () => {
      const chosen = await Promise.all(Array.from({ length: 5 }, () => issue('fail-rotate')));
      const result = await serviceWith(failing('successorOf', 3, new AppError('ERR_INTERNAL', 'boom'))).rotate(actor, 'owner=fail-rotate', 'x', '1h');
      expect(result.incident).toMatchObject({ status: 'failed', keyCount: 2, plannedCount: 5, failure: 'boom' });
      expect(result.keys).toHaveLength(2);
      for (const k of result.keys) expect((await ctx.keys.verify({ key: k.key })).code).toBe('VALID');
      const superseded = await Promise.all(chosen.map((k) => ctx.keys.get(k.record.id)));
      expect(superseded.filter((r) => r.status === 'superseded')).toHaveLength(2);
      expect(await ctx.audit.verify(ctx.store.db)).toMatchObject({ ok: true });
    });

    it('throws when a rotation fails before any batch committed', async () => {
      await Promise.all(Array.from({ length: 2 }, () => issue('fail-rotate-early')));
      const seq = await head();
      await expect(serviceWith(failing('successorOf', 1, new AppError('ERR_INTERNAL', 'early'))).rotate(actor, 'owner=fail-rotate-early', 'x', '1h')).rejects.toThrow('early');
      const opened = (await events(seq)).find((e) => e.action === 'incident.opened')!;
      expect(await incidents.get(opened.target!)).toMatchObject({ select: 'owner=fail-rotate-early', status: 'failed', keyCount: 0, failure: 'early' });
    });
  });

  describe('when the database fails a batch inside its transaction', () => {
    it("revoke: that batch's keys still verify VALID, earlier batches REVOKED, the incident failed; a rerun finishes", async () => {
      const issued = await Promise.all(Array.from({ length: 8 }, () => issue('db-fail-revoke')));
      const byId = new Map(issued.map((k) => [k.record.id, k]));
      // The executor works in plan order: batches of 3 are keys 0–2, 3–5 and 6–7 of this list.
      const planned = (await incidents.plan('revoke', 'owner=db-fail-revoke')).keys.map((k) => byId.get(k.id)!);
      expect(planned).toHaveLength(8);
      // Cached first: the verdicts below must come through verify's cache, not only the table.
      for (const k of planned) expect((await ctx.keys.verify({ key: k.key })).code).toBe('VALID');
      const fault = await failUpdatesOf(
        ctx.store.db,
        dialect,
        'api_keys',
        `OLD.id = ${literal(planned[4]!.record.id)} AND NEW.revoked_at IS NOT NULL`,
        'fail_incident_revoke',
      );
      const seq = await head();
      try {
        await expect(incidents.revoke(actor, 'owner=db-fail-revoke', 'db fault drill')).rejects.toThrow(INJECTED_FAULT);
      } finally {
        await fault.remove();
      }
      const codes = [];
      for (const k of planned) codes.push((await ctx.keys.verify({ key: k.key })).code);
      expect(codes).toEqual(['REVOKED', 'REVOKED', 'REVOKED', 'VALID', 'VALID', 'VALID', 'VALID', 'VALID']);
      expect((await ctx.keys.get(planned[3]!.record.id)).status).toBe('active');

      const written = await events(seq);
      const opened = written.find((e) => e.action === 'incident.opened')!;
      expect(await incidents.get(opened.target!)).toMatchObject({ status: 'failed', keyCount: 3, plannedCount: 8, failure: 'internal error', finishedAt: expect.any(String) });
      expect(written.filter((e) => e.action === 'key.revoked').map((e) => e.target).sort()).toEqual(planned.slice(0, 3).map((k) => k.record.id).sort());
      expect(written.at(-1)).toMatchObject({ action: 'incident.closed', target: opened.target, data: { status: 'failed', keys: 3 } });
      expect(JSON.stringify(written)).not.toContain(INJECTED_FAULT);
      expect(await ctx.audit.verify(ctx.store.db)).toMatchObject({ ok: true });

      const again = await incidents.revoke(actor, 'owner=db-fail-revoke', 'db fault drill');
      expect(again.incident).toMatchObject({ status: 'done', keyCount: 5, plannedCount: 5 });
      for (const k of planned) expect((await ctx.keys.verify({ key: k.key })).code).toBe('REVOKED');
    });

    it('rotate: that batch rolls back (no successor, old keys unrotated), earlier successors verify, the incident failed', async () => {
      const issued = await Promise.all(Array.from({ length: 5 }, () => issue('db-fail-rotate')));
      const byId = new Map(issued.map((k) => [k.record.id, k]));
      // Batches of 2: keys 0–1, 2–3 and 4.
      const planned = (await incidents.plan('rotate', 'owner=db-fail-rotate')).keys.map((k) => byId.get(k.id)!);
      for (const k of planned) expect((await ctx.keys.verify({ key: k.key })).code).toBe('VALID');
      // Fails the second batch at its last statement but the audit: its successors are inserted by then.
      const fault = await failUpdatesOf(
        ctx.store.db,
        dialect,
        'api_keys',
        `OLD.id = ${literal(planned[3]!.record.id)} AND NEW.replaced_by IS NOT NULL`,
        'fail_incident_rotate',
      );
      let result;
      try {
        result = await incidents.rotate(actor, 'owner=db-fail-rotate', 'db fault drill', '1h');
      } finally {
        await fault.remove();
      }
      expect(result.incident).toMatchObject({ status: 'failed', keyCount: 2, plannedCount: 5, failure: 'internal error' });
      expect(result.keys.map((k) => k.replaces)).toEqual(planned.slice(0, 2).map((k) => k.record.id));
      for (const next of result.keys) {
        expect(await ctx.keys.verify({ key: next.key })).toMatchObject({ code: 'VALID', keyId: next.id });
        expect(await ctx.keys.verify({ key: byId.get(next.replaces)!.key })).toMatchObject({ code: 'VALID', rotation: { replacedBy: next.id } });
      }
      for (const old of planned.slice(2)) {
        const verdict = await ctx.keys.verify({ key: old.key });
        expect(verdict.code).toBe('VALID');
        expect(verdict).not.toHaveProperty('rotation');
        expect(await ctx.keys.get(old.record.id)).toMatchObject({ status: 'active', replacedBy: null });
      }
      // The rolled-back batch left no successor rows behind.
      const successors = await ctx.store.db.selectFrom('api_keys').select('replaces').where('replaces', 'in', planned.map((k) => k.record.id)).execute();
      expect(successors.map((row) => row.replaces).sort()).toEqual(planned.slice(0, 2).map((k) => k.record.id).sort());
      expect(await ctx.audit.verify(ctx.store.db)).toMatchObject({ ok: true });
    });
  });

  describe('an incident whose server died', () => {
    it('is closed as failed once it has not moved for five minutes, with an audit event; a moving one is left alone', async () => {
      const started = new Date(ctx.clock.now()).toISOString();
      const row = (id: string, updatedAt: string) => ({
        id,
        action: 'revoke',
        selector: JSON.stringify(parseSelector('owner=gone')),
        reason: 'leak',
        status: 'running',
        key_count: 3,
        planned_count: 10,
        overlap: null,
        started_at: started,
        finished_at: null,
        created_by: actor.actor,
        failure: null,
        updated_at: updatedAt,
      } as const);
      const stuck = 'inc_stuck00000000000000000';
      const moving = 'inc_moving0000000000000000';
      await ctx.store.db.insertInto('incidents').values([row(stuck, started), row(moving, started)]).execute();
      ctx.clock.advance(4 * 60_000);
      await ctx.store.db.updateTable('incidents').set({ updated_at: new Date(ctx.clock.now()).toISOString() }).where('id', '=', moving).execute();
      expect(await incidents.closeInterrupted()).toBe(0);
      const before = await head();
      ctx.clock.advance(2 * 60_000);
      expect(await incidents.closeInterrupted()).toBe(1);
      expect(await incidents.get(stuck)).toMatchObject({ status: 'failed', keyCount: 3, failure: expect.stringContaining('interrupted: 3 of 10 keys done') });
      expect((await incidents.get(moving)).status).toBe('running');
      expect((await events(before)).map((event) => [event.action, event.target, event.data.status])).toEqual([['incident.closed', stuck, 'failed']]);
      expect(await incidents.closeInterrupted()).toBe(0);
      await ctx.store.db.deleteFrom('incidents').where('id', '=', moving).execute();
    });
  });

  describe('the incident list', () => {
    it('lists newest first and pages with a cursor', async () => {
      ctx.clock.advance(1_000);
      const { incident: latest } = await incidents.revoke(actor, 'owner=nobody-at-all', 'drill');
      const first = await incidents.list({ limit: 1 });
      expect(first.data.map((i) => i.id)).toEqual([latest.id]);
      expect(first.nextCursor).not.toBeNull();
      const rest = await incidents.list({ cursor: first.nextCursor!, limit: 100 });
      expect(rest.data.length).toBeGreaterThan(1);
      expect(rest.data.map((i) => i.id)).not.toContain(latest.id);
      await expect(incidents.get('inc_0000000000000000000000')).rejects.toMatchObject({ code: 'ERR_INCIDENT_NOT_FOUND' });
    });
  });
});
