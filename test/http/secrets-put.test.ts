/** PUT /v1/secrets/{path}: versions, stages on put, check-and-set, idempotent puts, metadata and bad input. */
import { request } from 'node:http';
import { describe, expect, it } from 'vitest';
import type { PutSecretResultWire, SecretValueWire, SecretVersionsWire } from '../../src/contract/index.js';
import { describeEachDialect } from '../support/databases.js';
import type { TestContext } from '../support/context.js';
import { auditAfter, auditHead, expectProblem, problemFields, unique, useContext } from './helpers.js';

/** Row counts of the vault tables and the audit log, for "nothing half-written". */
async function vaultCounts(ctx: TestContext): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const table of ['secrets', 'secret_versions', 'secret_stages', 'audit_events'] as const) {
    const row = await ctx.store.db
      .selectFrom(table)
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .executeTakeFirst();
    out[table] = Number(row?.n ?? 0);
  }
  return out;
}

/** An HTTP request whose path goes on the wire exactly as written (no dot-segment resolution). */
function rawRequest(url: string, method: string, token: string, body: string): Promise<{ status: number; body: string }> {
  const { host, port } = new URL(url.slice(0, url.indexOf('/', 8)));
  return new Promise((resolve, reject) => {
    const req = request(
      { host: host.split(':')[0], port, method, path: url.slice(url.indexOf('/', 8)), headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describeEachDialect('PUT /v1/secrets/{path}', (dialect) => {
  const ctx = useContext(dialect);
  let address: string | undefined;

  const put = (path: string, body: unknown, token?: string) => ctx().request({ method: 'PUT', url: `/v1/secrets/${path}`, body, ...(token ? { token } : {}) });
  const get = (path: string, query = '', token?: string) => ctx().request({ method: 'GET', url: `/v1/secrets/${path}${query}`, ...(token ? { token } : {}) });
  const putOk = async (path: string, body: Record<string, unknown>, status = 201): Promise<PutSecretResultWire> => {
    const res = await put(path, body);
    expect(res.statusCode, res.body).toBe(status);
    return res.json() as PutSecretResultWire;
  };
  const versionsOf = async (path: string): Promise<SecretVersionsWire> => {
    const res = await ctx().request({ method: 'GET', url: `/v1/secrets/${path}/versions` });
    expect(res.statusCode, res.body).toBe(200);
    return res.json() as SecretVersionsWire;
  };
  /** Runs `fn` and asserts no vault or audit row appeared or went. */
  const nothingWritten = async (fn: () => Promise<void>) => {
    const before = await vaultCounts(ctx());
    await fn();
    expect(await vaultCounts(ctx())).toEqual(before);
  };

  describe('happy', () => {
    it('creates a secret at version 1 carrying current, and answers 201 with created: true', async () => {
      const path = `${unique('app')}/db/password`;
      const res = await put(path, { value: 'hunter2-初期', owner: 'team-db', description: 'primary database', labels: { env: 'prod' } });
      expect(res.statusCode, res.body).toBe(201);
      const body = res.json() as PutSecretResultWire;
      expect(body).toEqual({ id: expect.stringMatching(/^sec_[0-9A-Za-z]{22}$/), path, version: 1, stages: ['current'], created: true, replayed: false });
      expect(res.body).not.toContain('hunter2');
      const read = (await get(path)).json() as SecretValueWire;
      expect(read).toMatchObject({ id: body.id, path, version: 1, stages: ['current'], value: 'hunter2-初期' });
      const { secret } = await versionsOf(path);
      expect(secret).toMatchObject({ owner: 'team-db', description: 'primary database', labels: { env: 'prod' }, maxVersions: 20, currentVersion: 1, stages: { current: 1 }, deletedAt: null });
    });

    it('numbers versions 1, 2, 3 and moves the old current to previous on each put', async () => {
      const path = `${unique('app')}/token`;
      await putOk(path, { value: 'one' });
      const second = await putOk(path, { value: 'two' });
      expect(second).toMatchObject({ version: 2, stages: ['current'], created: false });
      const third = await putOk(path, { value: 'three' });
      expect(third.version).toBe(3);
      const { secret, versions } = await versionsOf(path);
      expect(secret.stages).toEqual({ current: 3, previous: 2 });
      expect(versions.map((v) => [v.version, v.stages])).toEqual([
        [3, ['current']],
        [2, ['previous']],
        [1, []],
      ]);
      expect(((await get(path, '?stage=previous')).json() as SecretValueWire).value).toBe('two');
      expect(((await get(path, '?version=1')).json() as SecretValueWire).value).toBe('one');
    });

    it('stores a JSON object value and reads it back as the same object', async () => {
      const path = `${unique('app')}/stripe`;
      const value = { apiKey: 'sk_test_abc', nested: { list: [1, 2, 3], flag: true, none: null }, 'ünï': 'ß' };
      await putOk(path, { value });
      expect(((await get(path)).json() as SecretValueWire).value).toEqual(value);
    });

    it('puts a pending version without touching current, and reading pending returns it', async () => {
      const path = `${unique('app')}/pending`;
      await putOk(path, { value: 'live' });
      const pending = await putOk(path, { value: 'next', stage: 'pending' });
      expect(pending).toMatchObject({ version: 2, stages: ['pending'] });
      expect(((await get(path)).json() as SecretValueWire)).toMatchObject({ version: 1, value: 'live' });
      expect(((await get(path, '?stage=pending')).json() as SecretValueWire)).toMatchObject({ version: 2, value: 'next' });
      const another = await putOk(path, { value: 'next-again', stage: 'pending' });
      const { secret } = await versionsOf(path);
      expect(secret.stages).toEqual({ current: 1, pending: another.version });
    });

    it('accepts a value of exactly 64 KiB', async () => {
      const path = `${unique('app')}/big`;
      await putOk(path, { value: 'x'.repeat(64 * 1024) });
      expect(((await get(path)).json() as SecretValueWire).value).toHaveLength(64 * 1024);
    });

    it('updates owner, description, labels and expiry on a later put and audits which fields changed', async () => {
      const path = `${unique('app')}/meta`;
      await putOk(path, { value: 'v1', owner: 'a-team' });
      const head = await auditHead(ctx());
      await putOk(path, { value: 'v2', owner: 'b-team', labels: { tier: 'gold' }, expiresAt: '2027-01-01T00:00:00Z' });
      const { secret } = await versionsOf(path);
      expect(secret).toMatchObject({ owner: 'b-team', labels: { tier: 'gold' }, expiresAt: '2027-01-01T00:00:00.000Z' });
      const events = await auditAfter(ctx(), head);
      expect(events.map((e) => e.action)).toEqual(['secret.updated', 'secret.version.added']);
      expect(events[0]!.data).toMatchObject({ fields: ['owner', 'labels', 'expiresAt'] });
    });

    it('audits secret.created and secret.version.added in order, without the value', async () => {
      const path = `${unique('app')}/audited`;
      const head = await auditHead(ctx());
      const created = await putOk(path, { value: 'audit-me-not-1a2b3c' });
      const events = await auditAfter(ctx(), head);
      expect(events.map((e) => [e.action, e.target])).toEqual([
        ['secret.created', created.id],
        ['secret.version.added', created.id],
      ]);
      expect(events[1]!.data).toMatchObject({ path, version: 1, stages: ['current'], kekVersion: expect.any(Number) });
      expect(JSON.stringify(events)).not.toContain('audit-me-not-1a2b3c');
    });
  });

  describe('check-and-set', () => {
    it('creates with cas 0 and refuses a second create-only put with 409 ERR_SECRET_CAS_MISMATCH', async () => {
      const path = `${unique('app')}/cas0`;
      expect((await putOk(path, { value: 'first', cas: 0 })).version).toBe(1);
      await nothingWritten(async () => {
        expectProblem(await put(path, { value: 'second', cas: 0 }), 409, 'ERR_SECRET_CAS_MISMATCH', 'conflict');
      });
      expect(((await get(path)).json() as SecretValueWire).value).toBe('first');
    });

    it('adds a version when cas names the current version and refuses a stale cas', async () => {
      const path = `${unique('app')}/cas`;
      await putOk(path, { value: 'a' });
      await putOk(path, { value: 'b', cas: 1 });
      const head = await auditHead(ctx());
      await nothingWritten(async () => {
        const problem = expectProblem(await put(path, { value: 'c', cas: 1 }), 409, 'ERR_SECRET_CAS_MISMATCH');
        expect(problem.detail).toContain('current version is 2');
        expect(problem.detail).not.toContain('"c"');
      });
      expect(await auditHead(ctx())).toBe(head);
      expect(((await get(path)).json() as SecretValueWire).value).toBe('b');
    });

    it('refuses a non-zero cas on a path that does not exist, creating nothing', async () => {
      const path = `${unique('app')}/ghost`;
      await nothingWritten(async () => {
        expectProblem(await put(path, { value: 'x', cas: 3 }), 409, 'ERR_SECRET_CAS_MISMATCH');
      });
      expectProblem(await get(path), 404, 'ERR_SECRET_NOT_FOUND');
    });

    it('compares cas with current even for a pending put', async () => {
      const path = `${unique('app')}/cas-pending`;
      await putOk(path, { value: 'a' });
      expectProblem(await put(path, { value: 'b', stage: 'pending', cas: 0 }), 409, 'ERR_SECRET_CAS_MISMATCH');
      expect((await putOk(path, { value: 'b', stage: 'pending', cas: 1 })).stages).toEqual(['pending']);
    });
  });

  describe('idempotent puts', () => {
    it('answers a repeated requestToken with the same value with 200, replayed: true and the same version', async () => {
      const path = `${unique('app')}/idem`;
      const first = await putOk(path, { value: { user: 'svc', pass: 'p@ss' }, requestToken: 'deploy-41' });
      const head = await auditHead(ctx());
      const again = await putOk(path, { value: { user: 'svc', pass: 'p@ss' }, requestToken: 'deploy-41' }, 200);
      expect(again).toEqual({ ...first, created: false, replayed: true });
      // The replay is audited (issue 9), and writes nothing else.
      const events = await auditAfter(ctx(), head);
      expect(events.map((e) => [e.action, e.data])).toEqual([['secret.put.replayed', { path, requestToken: 'deploy-41', version: 1 }]]);
      expect((await versionsOf(path)).versions).toHaveLength(1);
    });

    it('replays after other versions were added, naming the version it made then', async () => {
      const path = `${unique('app')}/idem-later`;
      await putOk(path, { value: 'one', requestToken: 'tok-1' });
      await putOk(path, { value: 'two' });
      const replay = await putOk(path, { value: 'one', requestToken: 'tok-1' }, 200);
      expect(replay).toMatchObject({ version: 1, stages: ['previous'], replayed: true });
      expect(((await get(path)).json() as SecretValueWire).value).toBe('two');
    });

    it('refuses the same requestToken with another value: 409 ERR_SECRET_REQUEST_TOKEN_REUSED, nothing written', async () => {
      const path = `${unique('app')}/idem-conflict`;
      await putOk(path, { value: 'original', requestToken: 'tok-x' });
      const before = await vaultCounts(ctx());
      const problem = expectProblem(await put(path, { value: 'different', requestToken: 'tok-x' }), 409, 'ERR_SECRET_REQUEST_TOKEN_REUSED', 'conflict');
      expect(problem.detail).not.toContain('different');
      expect(problem.detail).not.toContain('original');
      // Nothing is written but the audit event of the refused replay.
      expect(await vaultCounts(ctx())).toEqual({ ...before, audit_events: (before.audit_events ?? 0) + 1 });
      // A string and a JSON object that serialise alike are different values.
      await putOk(path, { value: '{"a":1}', requestToken: 'tok-y' });
      expectProblem(await put(path, { value: { a: 1 }, requestToken: 'tok-y' }), 409, 'ERR_SECRET_REQUEST_TOKEN_REUSED');
    });

    it('replays a retried create-only put (cas 0) instead of calling it stale', async () => {
      const path = `${unique('app')}/idem-cas0`;
      const first = await putOk(path, { value: 'made-once', cas: 0, requestToken: 'create-1' });
      const retry = await putOk(path, { value: 'made-once', cas: 0, requestToken: 'create-1' }, 200);
      expect(retry).toMatchObject({ id: first.id, version: 1, replayed: true });
    });

    it('replays a retried put with cas instead of calling it stale', async () => {
      const path = `${unique('app')}/idem-cas`;
      await putOk(path, { value: 'v1' });
      const second = await putOk(path, { value: 'v2', cas: 1, requestToken: 'step-2' });
      const retry = await putOk(path, { value: 'v2', cas: 1, requestToken: 'step-2' }, 200);
      expect(retry).toMatchObject({ version: second.version, replayed: true });
    });
  });

  describe('error', () => {
    it('answers 413 ERR_SECRET_VALUE_TOO_LARGE for a value one byte over 64 KiB, writing nothing', async () => {
      const path = `${unique('app')}/too-big`;
      await nothingWritten(async () => {
        const problem = expectProblem(await put(path, { value: 'y'.repeat(64 * 1024 + 1) }), 413, 'ERR_SECRET_VALUE_TOO_LARGE');
        expect(problem.detail).not.toContain('yyyy');
      });
      expectProblem(await get(path), 404, 'ERR_SECRET_NOT_FOUND');
    });

    it('counts a JSON object by its serialised bytes (multi-byte characters included)', async () => {
      const path = `${unique('app')}/too-big-json`;
      await put(path, { value: 'small' });
      await nothingWritten(async () => {
        expectProblem(await put(path, { value: { blob: 'é'.repeat(33_000) } }), 413, 'ERR_SECRET_VALUE_TOO_LARGE');
      });
      expect((await versionsOf(path)).versions).toHaveLength(1);
    });

    it.each([
      ['Payments/stripe', 'uppercase'],
      ['payments/.../x', 'a segment of dots only'],
      ['payments//x', 'an empty segment'],
      ['payments/x y', 'a space'],
      ['payments/x%00', 'a NUL byte'],
      ['payments/stripe/versions', 'a reserved last segment (versions)'],
      ['payments/stripe/readers', 'a reserved last segment (readers)'],
      ['payments/stripe/promote', 'a reserved last segment (promote)'],
      [`${'a'.repeat(257)}`, 'over 256 characters'],
    ])('answers 400 ERR_SECRET_PATH_INVALID for %s (%s), writing nothing', async (path) => {
      await nothingWritten(async () => {
        expectProblem(await put(path, { value: 'x' }), 400, 'ERR_SECRET_PATH_INVALID', 'invalid_request');
      });
    });

    it.each([
      ['no value', {}],
      ['a null value', { value: null }],
      ['a number value', { value: 42 }],
      ['an array value', { value: ['a'] }],
      ['an unknown field', { value: 'x', colour: 'red' }],
      ['a reserved stage other than current/pending', { value: 'x', stage: 'previous' }],
      ['a negative cas', { value: 'x', cas: -1 }],
      ['a fractional cas', { value: 'x', cas: 1.5 }],
      ['maxVersions 0', { value: 'x', maxVersions: 0 }],
      ['maxVersions 101', { value: 'x', maxVersions: 101 }],
      ['a request token with spaces', { value: 'x', requestToken: 'a b' }],
      ['an empty owner', { value: 'x', owner: '' }],
      ['an expiry that is not a time', { value: 'x', expiresAt: 'tomorrow' }],
    ])('answers 400 for %s, writing nothing', async (_name, body) => {
      const path = `${unique('app')}/bad`;
      await nothingWritten(async () => {
        const res = await put(path, body);
        expect(res.statusCode, res.body).toBe(400);
        expectProblem(res, 400);
      });
    });

    it.each(['payments/../admin', 'payments/./x', 'payments/%2E%2E/admin'])(
      'answers 400 ERR_SECRET_PATH_INVALID for %s sent as is over a socket (inject() resolves dot segments first)',
      async (path) => {
        // Listening once per suite; closing the context closes the socket.
        address ??= await ctx().app.listen({ host: '127.0.0.1', port: 0 });
        await nothingWritten(async () => {
          const res = await rawRequest(`${address}/v1/secrets/${path}`, 'PUT', ctx().rootToken, JSON.stringify({ value: 'x' }));
          expect(res.status, res.body).toBe(400);
          expect(JSON.parse(res.body)).toMatchObject({ error: 'ERR_SECRET_PATH_INVALID' });
        });
      },
    );

    it('names the unknown field', async () => {
      const problem = expectProblem(await put(`${unique('app')}/x`, { value: 'x', colour: 'red' }), 400, 'ERR_INVALID_REQUEST');
      expect(problemFields(problem)).toContain('colour');
    });

    it('answers 400 ERR_INVALID_JSON for a malformed body and 415 for another content type', async () => {
      const path = `${unique('app')}/x`;
      await nothingWritten(async () => {
        expectProblem(await ctx().request({ method: 'PUT', url: `/v1/secrets/${path}`, headers: { 'content-type': 'application/json' }, payload: '{"value": "x",' }), 400, 'ERR_INVALID_JSON');
        expectProblem(await ctx().request({ method: 'PUT', url: `/v1/secrets/${path}`, headers: { 'content-type': 'text/plain' }, payload: 'x' }), 415);
      });
    });

    it('refuses a put to a secret scheduled for deletion with 404 ERR_SECRET_SCHEDULED_FOR_DELETION', async () => {
      const path = `${unique('app')}/deleted`;
      await putOk(path, { value: 'x' });
      expect((await ctx().request({ method: 'DELETE', url: `/v1/secrets/${path}` })).statusCode).toBe(200);
      await nothingWritten(async () => {
        expectProblem(await put(path, { value: 'y' }), 404, 'ERR_SECRET_SCHEDULED_FOR_DELETION', 'not_found');
      });
    });
  });

  describe('security', () => {
    it('answers 401 without a token and writes no secret', async () => {
      const path = `${unique('app')}/anon`;
      expectProblem(await ctx().request({ method: 'PUT', url: `/v1/secrets/${path}`, body: { value: 'x' }, token: null }), 401, 'ERR_UNAUTHENTICATED');
      expectProblem(await get(path), 404, 'ERR_SECRET_NOT_FOUND');
    });

    it('answers 403 for a token with secrets:read only', async () => {
      const token = await ctx().token(['secrets:read']);
      const path = `${unique('app')}/ro`;
      expectProblem(await put(path, { value: 'x' }, token), 403, 'ERR_FORBIDDEN');
      expectProblem(await get(path), 404, 'ERR_SECRET_NOT_FOUND');
    });

    it('lets secrets:write:payments/* write under payments/ and nowhere else', async () => {
      const token = await ctx().token(['secrets:write:payments/*']);
      const inside = `payments/${unique('p')}/key`;
      expect((await put(inside, { value: 'ok' }, token)).statusCode).toBe(201);
      const outside = `billing/${unique('p')}/key`;
      const problem = expectProblem(await put(outside, { value: 'no' }, token), 403, 'ERR_FORBIDDEN');
      expect(problem.detail).toContain(`secrets:write:${outside}`);
      expectProblem(await get(outside), 404, 'ERR_SECRET_NOT_FOUND');
      // A sibling whose name merely starts with the same letters is outside too.
      expectProblem(await put(`payments-evil/${unique('p')}`, { value: 'no' }, token), 403, 'ERR_FORBIDDEN');
      // The bare prefix is not under it.
      expectProblem(await put('payments', { value: 'no' }, token), 403, 'ERR_FORBIDDEN');
    });

    it('answers 400 for an invalid path before deciding on scope, and 401 before either without a token', async () => {
      const token = await ctx().token(['secrets:write:payments/*']);
      expectProblem(await put('Payments/x', { value: 'x' }, token), 400, 'ERR_SECRET_PATH_INVALID');
      expectProblem(await ctx().request({ method: 'PUT', url: '/v1/secrets/Payments/x', body: { value: 'x' }, token: null }), 401);
    });
  });
});
