import { describe, expect, it } from 'vitest';
import type { KeyRecordWire } from '../../src/contract/index.js';
import { describeEachDialect } from '../support/databases.js';
import {
  DAY,
  HOUR,
  auditAfter,
  auditHead,
  changeKey,
  createKey,
  expectNothingWritten,
  expectProblem,
  getKey,
  idOf,
  iso,
  unique,
  unknownKeyId,
  useContext,
  verifyKey,
} from './helpers.js';

describeEachDialect('POST /v1/keys/:id/rotate', (dialect) => {
  const ctx = useContext(dialect);

  const rotate = (id: string, body: Record<string, unknown> = { overlap: '24h' }, token?: string) =>
    ctx().request({ method: 'POST', url: `/v1/keys/${id}/rotate`, body, ...(token ? { token } : {}) });

  describe('happy path', () => {
    it("answers 201 with a new key and id, copying the old key's settings", async () => {
      const old = await createKey(ctx(), {
        owner: 'payments',
        purpose: 'checkout',
        env: 'test',
        scopes: ['orders:read', 'orders:write'],
        labels: { team: 'payments', tier: 'gold' },
        ipAllowlist: ['10.0.0.0/8', '2001:db8::/32'],
        rateLimit: { limit: 100, window: '1m' },
        ttl: '10d',
      });
      ctx().clock.advance(HOUR);
      const now = ctx().clock.now();
      const res = await rotate(old.id, { overlap: '24h' });
      expect(res.statusCode).toBe(201);
      expect(res.headers['cache-control']).toBe('no-store');
      const body = res.json();
      expect(body.key).not.toBe(old.key);
      expect(body.id).not.toBe(old.id);
      expect(idOf(body.key)).toBe(body.id);
      expect(body.key).toMatch(/^ks_test_/);
      expect(body).toMatchObject({
        kind: 'service',
        status: 'active',
        owner: 'payments',
        purpose: 'checkout',
        env: 'test',
        scopes: ['orders:read', 'orders:write'],
        labels: { team: 'payments', tier: 'gold' },
        ipAllowlist: ['10.0.0.0/8', '2001:db8::/32'],
        rateLimit: { limit: 100, window: '1m' },
        replaces: old.id,
        replacedBy: null,
        createdAt: iso(now),
        // A fresh expiry of the old key's lifetime.
        expiresAt: iso(now + 10 * DAY),
        lastUsedAt: null,
      });
      expect(body.previous).toMatchObject({ id: old.id, status: 'superseded', replacedBy: body.id, graceEndsAt: iso(now + DAY) });
      expect(body.previous).not.toHaveProperty('key');
      const { key: _key, previous: _previous, ...record } = body;
      expect(await getKey(ctx(), body.id)).toEqual(record);
      expect(await getKey(ctx(), old.id)).toMatchObject({ status: 'superseded', replacedBy: body.id, graceEndsAt: iso(now + DAY) });
    });

    it('keeps the old key VALID with rotation details during the overlap', async () => {
      const old = await createKey(ctx(), { scopes: ['a:b'] });
      expect((await verifyKey(ctx(), old.key)).code).toBe('VALID'); // cached before the rotation
      const rotated = (await rotate(old.id, { overlap: '2h' })).json();
      const graceEndsAt = iso(ctx().clock.now() + 2 * HOUR);
      expect(await verifyKey(ctx(), old.key)).toMatchObject({
        valid: true,
        code: 'VALID',
        keyId: old.id,
        expiresAt: graceEndsAt,
        rotation: { replacedBy: rotated.id, graceEndsAt },
      });
      const fresh = await verifyKey(ctx(), rotated.key, { scopes: ['a:b'] });
      expect(fresh).toMatchObject({ valid: true, code: 'VALID', keyId: rotated.id });
      expect(fresh).not.toHaveProperty('rotation');
    });

    it('answers EXPIRED for the old key once the overlap has passed', async () => {
      const old = await createKey(ctx());
      const rotated = (await rotate(old.id, { overlap: '1h' })).json();
      ctx().clock.advance(HOUR - 1);
      expect((await verifyKey(ctx(), old.key)).code).toBe('VALID');
      ctx().clock.advance(1);
      expect(await verifyKey(ctx(), old.key)).toMatchObject({ valid: false, code: 'EXPIRED', keyId: old.id });
      expect((await verifyKey(ctx(), rotated.key)).code).toBe('VALID');
    });

    it("ends the grace at the old key's own expiry when that comes first", async () => {
      const old = await createKey(ctx(), { ttl: '1h' });
      ctx().clock.advance(HOUR / 2);
      const res = await rotate(old.id, { overlap: '24h' });
      expect(res.statusCode).toBe(201);
      const rotated = res.json();
      expect(rotated.previous.graceEndsAt).toBe(old.expiresAt);
      expect((await verifyKey(ctx(), old.key)).rotation).toEqual({ replacedBy: rotated.id, graceEndsAt: old.expiresAt });
      ctx().clock.set(old.expiresAt);
      expect((await verifyKey(ctx(), old.key)).code).toBe('EXPIRED');
      expect((await verifyKey(ctx(), rotated.key)).code).toBe('VALID');
    });

    it('uses a 24h overlap by default', async () => {
      const old = await createKey(ctx());
      const res = await rotate(old.id, {});
      expect(res.statusCode).toBe(201);
      expect(res.json().previous.graceEndsAt).toBe(iso(ctx().clock.now() + DAY));
    });

    it('takes a ttl or expiresAt for the successor', async () => {
      const a = await createKey(ctx());
      const withTtl = await rotate(a.id, { overlap: '1h', ttl: '7d' });
      expect(withTtl.statusCode).toBe(201);
      expect(withTtl.json().expiresAt).toBe(iso(ctx().clock.now() + 7 * DAY));
      const b = await createKey(ctx());
      const at = iso(ctx().clock.now() + 3 * DAY);
      const withAt = await rotate(b.id, { overlap: '1h', expiresAt: at });
      expect(withAt.json().expiresAt).toBe(at);
    });

    it('rotates the successor in turn', async () => {
      const first = await createKey(ctx());
      const second = (await rotate(first.id)).json();
      const third = await rotate(second.id);
      expect(third.statusCode).toBe(201);
      expect(third.json().replaces).toBe(second.id);
      expect((await verifyKey(ctx(), third.json().key)).code).toBe('VALID');
    });

    it('lets the successor be revoked without touching the old key during overlap', async () => {
      const old = await createKey(ctx());
      const rotated = (await rotate(old.id)).json();
      await changeKey(ctx(), rotated.id, 'revoke', { reason: 'bad deploy' });
      expect((await verifyKey(ctx(), rotated.key)).code).toBe('REVOKED');
      expect((await verifyKey(ctx(), old.key)).code).toBe('VALID');
    });

    it('answers REVOKED for the old key when it is revoked during the overlap', async () => {
      const old = await createKey(ctx());
      await rotate(old.id);
      await changeKey(ctx(), old.id, 'revoke', { reason: 'leaked' });
      expect((await verifyKey(ctx(), old.key)).code).toBe('REVOKED');
    });

    it('records key.rotated on the old key and key.issued on the successor, with the request id', async () => {
      const old = await createKey(ctx());
      const token = await ctx().token(['keys:rotate']);
      const head = await auditHead(ctx());
      const res = await rotate(old.id, { overlap: '2h' }, token);
      expect(res.statusCode).toBe(201);
      const events = await auditAfter(ctx(), head);
      const requestId = res.headers['x-request-id'];
      expect(events.map((event) => [event.action, event.target, event.actor, event.requestId])).toEqual([
        ['key.rotated', old.id, idOf(token), requestId],
        ['key.issued', res.json().id, idOf(token), requestId],
      ]);
      expect(events[0]!.data).toMatchObject({ successor: res.json().id, overlap: '2h' });
      expect(events[1]!.data).toMatchObject({ rotatedFrom: old.id });
      expect(JSON.stringify(events)).not.toContain(res.json().key);
      expect(JSON.stringify(events)).not.toContain(old.key);
    });
  });

  describe('conflicts', () => {
    it('answers 409 when rotating a revoked key', async () => {
      const old = await createKey(ctx());
      await changeKey(ctx(), old.id, 'revoke', {});
      expectProblem(await rotate(old.id), 409, 'ERR_KEY_REVOKED', 'conflict');
    });

    it('answers 409 ERR_KEY_SUPERSEDED when rotating an already rotated key', async () => {
      const old = await createKey(ctx());
      const rotated = (await rotate(old.id)).json();
      const again = expectProblem(await rotate(old.id), 409, 'ERR_KEY_SUPERSEDED', 'conflict');
      expect(again.detail).toContain(rotated.id);
    });

    it('answers 409 when rotating an expired key', async () => {
      const old = await createKey(ctx(), { ttl: '1h' });
      ctx().clock.advance(2 * HOUR);
      expectProblem(await rotate(old.id), 409, 'ERR_KEY_EXPIRED', 'conflict');
    });

    it('answers 409 ERR_KEY_DISABLED when rotating a disabled key, and rotates it once enabled', async () => {
      const old = await createKey(ctx());
      await changeKey(ctx(), old.id, 'disable');
      await expectNothingWritten(ctx(), async () => {
        const problem = expectProblem(await rotate(old.id), 409, 'ERR_KEY_DISABLED', 'conflict');
        expect(problem.detail).toContain(old.id);
      });
      expect(await getKey(ctx(), old.id)).toMatchObject({ status: 'disabled', replacedBy: null });
      expect((await verifyKey(ctx(), old.key)).code).toBe('DISABLED');
      await changeKey(ctx(), old.id, 'enable');
      const res = await rotate(old.id);
      expect(res.statusCode, res.body).toBe(201);
      expect(res.json().replaces).toBe(old.id);
    });

    it('gives exactly one successor when two rotations race', async () => {
      for (let round = 0; round < 4; round += 1) {
        const owner = unique('race');
        const old = await createKey(ctx(), { owner });
        const results = await Promise.all([rotate(old.id), rotate(old.id)]);
        const statuses = results.map((res) => res.statusCode).sort();
        expect(statuses).toEqual([201, 409]);
        const winner = results.find((res) => res.statusCode === 201)!.json();
        expectProblem(results.find((res) => res.statusCode === 409)!, 409, 'ERR_KEY_SUPERSEDED');
        const list = await ctx().request({ method: 'GET', url: `/v1/keys?owner=${owner}` });
        const keys = list.json().data as KeyRecordWire[];
        expect(keys).toHaveLength(2);
        const successors = keys.filter((key) => key.replaces === old.id);
        expect(successors.map((key) => key.id)).toEqual([winner.id]);
        expect(keys.find((key) => key.id === old.id)!.replacedBy).toBe(winner.id);
        expect((await verifyKey(ctx(), winner.key)).code).toBe('VALID');
      }
    });
  });

  describe('errors', () => {
    it('answers 404 for an unknown id and 400 for a malformed one', async () => {
      expectProblem(await rotate(unknownKeyId()), 404, 'ERR_KEY_NOT_FOUND', 'not_found');
      expectProblem(await rotate('key_nope'), 400, 'ERR_INVALID_REQUEST');
    });

    it.each(['0s', 'abc', '-1h', '1.5h'])('refuses overlap %j with 400 naming overlap', async (overlap) => {
      const old = await createKey(ctx());
      const problem = expectProblem(await rotate(old.id, { overlap }), 400, undefined, 'invalid_request');
      expect(problem.detail).toContain('overlap');
      expect((await getKey(ctx(), old.id)).replacedBy).toBeNull();
    });

    it('refuses an overlap or ttl past the maximum with 422', async () => {
      const old = await createKey(ctx());
      expectProblem(await rotate(old.id, { overlap: '91d' }), 422, 'ERR_TTL_TOO_LONG', 'policy_violation');
      expectProblem(await rotate(old.id, { ttl: '91d' }), 422, 'ERR_TTL_TOO_LONG', 'policy_violation');
      expect((await getKey(ctx(), old.id)).replacedBy).toBeNull();
    });

    it('refuses unknown fields and both ttl and expiresAt', async () => {
      const old = await createKey(ctx());
      expect(expectProblem(await rotate(old.id, { overlap: '1h', grace: '1h' }), 400).detail).toContain('grace');
      expectProblem(await rotate(old.id, { ttl: '1d', expiresAt: iso(ctx().clock.now() + DAY) }), 400, 'ERR_INVALID_REQUEST');
      expect((await getKey(ctx(), old.id)).replacedBy).toBeNull();
    });
  });

  describe('security', () => {
    it('answers 401 without a token and 403 without keys:rotate, rotating nothing', async () => {
      const old = await createKey(ctx());
      expectProblem(await ctx().request({ method: 'POST', url: `/v1/keys/${old.id}/rotate`, token: null, body: {} }), 401, 'ERR_UNAUTHENTICATED');
      const token = await ctx().token(['keys:read', 'keys:create', 'keys:revoke']);
      expectProblem(await rotate(old.id, {}, token), 403, 'ERR_FORBIDDEN', 'forbidden');
      expect((await getKey(ctx(), old.id)).replacedBy).toBeNull();
    });

    it('lets a token with keys:rotate rotate', async () => {
      const old = await createKey(ctx());
      const token = await ctx().token(['keys:rotate']);
      const res = await rotate(old.id, {}, token);
      expect(res.statusCode).toBe(201);
      expect(res.json().createdBy).toBe(idOf(token));
    });
  });
});
