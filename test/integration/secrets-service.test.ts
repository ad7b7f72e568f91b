/**
 * The secret vault on real databases: concurrent writers under check-and-set, idempotent puts,
 * soft delete, destroy, pruning and read counts through the service; no value anywhere in a
 * database dump; ciphertexts swapped between rows fail to open instead of answering the other value.
 */
import { describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import type { ActorContext } from '../../src/audit/index.js';
import { isAppError } from '../../src/shared/errors.js';
import { describeEachDialect } from '../support/databases.js';
import type { TestContext } from '../support/context.js';
import { DAY, HOUR, auditAfter, auditHead, expectProblem, unique, useContext } from '../http/helpers.js';

const alice: ActorContext = { actor: 'prn_alice', requestId: 'req_a' };
const bob: ActorContext = { actor: 'prn_bob', requestId: 'req_b' };

/** The registry code a rejected promise carries, or 'fulfilled'. */
function outcome(result: PromiseSettledResult<unknown>): string {
  if (result.status === 'fulfilled') return 'fulfilled';
  return isAppError(result.reason) ? result.reason.code : `unexpected: ${String(result.reason)}`;
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  return outcome((await Promise.allSettled([promise]))[0]!);
}

/** Every row of every table in the store, as text. */
async function dumpDatabase(ctx: TestContext): Promise<{ tables: string[]; text: string }> {
  const db = ctx.store.db;
  const names =
    ctx.dialect === 'sqlite'
      ? (await sql<{ name: string }>`select name from sqlite_master where type = 'table'`.execute(db)).rows.map((r) => r.name)
      : (await sql<{ name: string }>`select table_name as name from information_schema.tables where table_schema = current_schema()`.execute(db)).rows.map((r) => r.name);
  const parts: string[] = [];
  for (const name of names) {
    const rows = (await sql<Record<string, unknown>>`select * from ${sql.table(name)}`.execute(db)).rows;
    parts.push(`${name}:${JSON.stringify(rows, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString('hex') : typeof v === 'bigint' ? String(v) : v))}`);
  }
  return { tables: names.sort(), text: parts.join('\n') };
}

/** The forms a leaked value could take in a dump. */
function encodings(text: string): string[] {
  const bytes = Buffer.from(text, 'utf8');
  return [text, bytes.toString('base64'), bytes.toString('base64url'), bytes.toString('hex'), bytes.toString('hex').toUpperCase()];
}

describeEachDialect('secret service on a real database', (dialect) => {
  const ctx = useContext(dialect);

  const versionRow = (secretId: string, version: number) =>
    ctx().store.db.selectFrom('secret_versions').selectAll().where('secret_id', '=', secretId).where('version', '=', version).executeTakeFirstOrThrow();

  describe('concurrent writers', () => {
    it('lets exactly one of two writers with the same cas win; the other gets ERR_SECRET_CAS_MISMATCH', async () => {
      for (let round = 0; round < 5; round++) {
        const path = `${unique('cas')}/race`;
        await ctx().secrets.put(alice, path, { value: 'base' });
        const results = await Promise.allSettled([
          ctx().secrets.put(alice, path, { value: 'alice-wins', cas: 1 }),
          ctx().secrets.put(bob, path, { value: 'bob-wins', cas: 1 }),
        ]);
        expect(results.map(outcome).sort()).toEqual(['ERR_SECRET_CAS_MISMATCH', 'fulfilled']);
        const winner = results.findIndex((r) => r.status === 'fulfilled');
        const read = await ctx().secrets.read(alice, path);
        expect(read).toMatchObject({ version: 2, value: winner === 0 ? 'alice-wins' : 'bob-wins' });
        const { versions, secret } = await ctx().secrets.versions(path);
        expect(versions.map((v) => v.version)).toEqual([2, 1]);
        expect(secret.stages).toEqual({ current: 2, previous: 1 });
      }
    });

    it('lets exactly one of two create-only writers (cas 0) create the secret', async () => {
      for (let round = 0; round < 5; round++) {
        const path = `${unique('cas0')}/race`;
        const results = await Promise.allSettled([
          ctx().secrets.put(alice, path, { value: 'a', cas: 0 }),
          ctx().secrets.put(bob, path, { value: 'b', cas: 0 }),
        ]);
        expect(results.map(outcome).sort()).toEqual(['ERR_SECRET_CAS_MISMATCH', 'fulfilled']);
        const { versions } = await ctx().secrets.versions(path);
        expect(versions.map((v) => v.version)).toEqual([1]);
        const count = await ctx().store.db.selectFrom('secrets').select((eb) => eb.fn.countAll<number | string>().as('n')).where('path', '=', path).executeTakeFirstOrThrow();
        expect(Number(count.n)).toBe(1);
      }
    });

    it('lets creators without cas all succeed on a new path, with distinct versions and one current', async () => {
      const path = `${unique('many')}/race`;
      const results = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => ctx().secrets.put(alice, path, { value: `w${i}` })));
      expect(results.map(outcome)).toEqual(Array(6).fill('fulfilled'));
      const made = results.map((r) => (r as PromiseFulfilledResult<{ version: number; created: boolean }>).value);
      expect(made.map((m) => m.version).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(made.filter((m) => m.created)).toHaveLength(1);
      const { secret } = await ctx().secrets.versions(path);
      expect(secret.stages).toEqual({ current: 6, previous: 5 });
    });

    it('lets exactly one of a promote and a put carrying the same cas win, leaving stages consistent', async () => {
      for (let round = 0; round < 5; round++) {
        const path = `${unique('promote')}/race`;
        await ctx().secrets.put(alice, path, { value: 'live' });
        await ctx().secrets.put(alice, path, { value: 'next', stage: 'pending' });
        const results = await Promise.allSettled([ctx().secrets.promote(alice, path, 1), ctx().secrets.put(bob, path, { value: 'direct', cas: 1 })]);
        expect(results.map(outcome).sort()).toEqual(['ERR_SECRET_CAS_MISMATCH', 'fulfilled']);
        const { secret } = await ctx().secrets.versions(path);
        if (results[0]!.status === 'fulfilled') expect(secret.stages).toEqual({ current: 2, previous: 1 });
        else expect(secret.stages).toEqual({ current: 3, previous: 1, pending: 2 });
      }
    });

    it('keeps every stage on one version while promotes, rollbacks and puts interleave without cas', async () => {
      const path = `${unique('storm')}/stage-mix`;
      await ctx().secrets.put(alice, path, { value: 's1' });
      await ctx().secrets.put(alice, path, { value: 's2' });
      const ops = Array.from({ length: 24 }, (_, i) => {
        switch (i % 4) {
          case 0:
            return ctx().secrets.put(alice, path, { value: `p${i}`, stage: 'pending' });
          case 1:
            return ctx().secrets.promote(bob, path);
          case 2:
            return ctx().secrets.rollback(alice, path);
          default:
            return ctx().secrets.put(bob, path, { value: `c${i}` });
        }
      });
      const results = await Promise.allSettled(ops);
      for (const code of results.map(outcome)) expect(['fulfilled', 'ERR_SECRET_NO_PENDING', 'ERR_SECRET_NO_PREVIOUS']).toContain(code);
      const rows = await ctx().store.db.selectFrom('secret_stages').selectAll().where('secret_id', '=', (await ctx().secrets.metadata(path)).id).execute();
      const stages = rows.map((r) => r.stage);
      expect(new Set(stages).size).toBe(stages.length);
      expect(stages).toContain('current');
      const current = await ctx().secrets.read(alice, path);
      expect(current.stages).toContain('current');
    });

    it('gives concurrent puts with one request token one version between them', async () => {
      const path = `${unique('idem')}/race`;
      await ctx().secrets.put(alice, path, { value: 'base' });
      const results = await Promise.allSettled(Array.from({ length: 4 }, () => ctx().secrets.put(alice, path, { value: 'same', requestToken: 'deploy-7' })));
      expect(results.map(outcome)).toEqual(Array(4).fill('fulfilled'));
      const made = results.map((r) => (r as PromiseFulfilledResult<{ version: number; replayed: boolean }>).value);
      expect(new Set(made.map((m) => m.version))).toEqual(new Set([2]));
      expect(made.filter((m) => !m.replayed)).toHaveLength(1);
      expect((await ctx().secrets.versions(path)).versions).toHaveLength(2);
    });

    it('gives concurrent first puts with one request token on a new path one secret and one version', async () => {
      const path = `${unique('idem')}/new`;
      const results = await Promise.allSettled(Array.from({ length: 2 }, () => ctx().secrets.put(alice, path, { value: 'same', requestToken: 'first' })));
      expect(results.map(outcome)).toEqual(['fulfilled', 'fulfilled']);
      expect((await ctx().secrets.versions(path)).versions).toHaveLength(1);
    });
  });

  describe('idempotent puts, delete and restore, destroy, pruning, read counts', () => {
    it('replays a put with the same token and refuses another value', async () => {
      const path = `${unique('idem')}/svc`;
      const first = await ctx().secrets.put(alice, path, { value: { a: 1 }, requestToken: 't1' });
      const again = await ctx().secrets.put(alice, path, { value: { a: 1 }, requestToken: 't1' });
      expect(again).toEqual({ ...first, created: false, replayed: true });
      expect(await codeOf(ctx().secrets.put(alice, path, { value: { a: 2 }, requestToken: 't1' }))).toBe('ERR_SECRET_REQUEST_TOKEN_REUSED');
      // The token is per secret: another path may use it.
      expect((await ctx().secrets.put(alice, `${path}-2`, { value: 'x', requestToken: 't1' })).replayed).toBe(false);
    });

    it('deletes, refuses reads in the window, restores, and purges after the window', async () => {
      const path = `${unique('del')}/svc`;
      const made = await ctx().secrets.put(alice, path, { value: 'gone-soon' });
      await ctx().secrets.delete(alice, path, '2d');
      expect(await codeOf(ctx().secrets.read(alice, path))).toBe('ERR_SECRET_SCHEDULED_FOR_DELETION');
      await ctx().secrets.restore(alice, path);
      expect((await ctx().secrets.read(alice, path)).value).toBe('gone-soon');
      await ctx().secrets.delete(alice, path, '1d');
      expect(await codeOf(ctx().secrets.delete(alice, path, '0d'))).toBe('ERR_INVALID_DURATION');
      ctx().clock.advance(DAY);
      expect(await codeOf(ctx().secrets.read(alice, path))).toBe('ERR_SECRET_NOT_FOUND');
      await ctx().secrets.purgeDue();
      expect(await ctx().store.db.selectFrom('secret_versions').select('version').where('secret_id', '=', made.id).execute()).toEqual([]);
    });

    it('refuses recovery windows outside 1d..30d', async () => {
      const path = `${unique('del')}/window`;
      await ctx().secrets.put(alice, path, { value: 'x' });
      expect(await codeOf(ctx().secrets.delete(alice, path, '12h'))).toBe('ERR_INVALID_REQUEST');
      expect(await codeOf(ctx().secrets.delete(alice, path, '31d'))).toBe('ERR_INVALID_REQUEST');
      expect((await ctx().secrets.read(alice, path)).value).toBe('x');
    });

    it('destroys values but keeps metadata, and refuses the current version', async () => {
      const path = `${unique('destroy')}/svc`;
      await ctx().secrets.put(alice, path, { value: 'one' });
      await ctx().secrets.put(alice, path, { value: 'two' });
      expect(await codeOf(ctx().secrets.destroy(alice, path, [2]))).toBe('ERR_SECRET_VERSION_IS_CURRENT');
      const result = await ctx().secrets.destroy(alice, path, [1]);
      expect(result.versions.map((v) => [v.version, v.destroyedAt !== null])).toEqual([
        [2, false],
        [1, true],
      ]);
      expect(await codeOf(ctx().secrets.read(alice, path, { version: 1 }))).toBe('ERR_SECRET_VERSION_DESTROYED');
      expect(await codeOf(ctx().secrets.promote(alice, path))).toBe('ERR_SECRET_NO_PENDING');
    });

    it('prunes the oldest unstaged versions past maxVersions', async () => {
      const path = `${unique('prune')}/svc`;
      await ctx().secrets.put(alice, path, { value: 'v1', maxVersions: 2 });
      await ctx().secrets.moveStage(alice, path, 'keep', 1);
      for (let i = 2; i <= 5; i++) await ctx().secrets.put(alice, path, { value: `v${i}` });
      expect((await ctx().secrets.versions(path)).versions.map((v) => v.version)).toEqual([5, 4, 1]);
    });

    it('counts reads per version and reader, within the since window', async () => {
      const path = `${unique('reads')}/svc`;
      await ctx().secrets.put(alice, path, { value: 'r1' });
      await ctx().secrets.put(alice, path, { value: 'r2' });
      await ctx().secrets.read(alice, path);
      await ctx().secrets.read(alice, path);
      await ctx().secrets.read(bob, path, { stage: 'previous' });
      const now = ctx().clock.now();
      expect(await ctx().secrets.readers(path, {}, now - HOUR)).toMatchObject({ version: 2, total: 2, readers: [{ principal: 'prn_alice', reads: 2 }] });
      expect(await ctx().secrets.readers(path, { stage: 'previous' }, now - HOUR)).toMatchObject({ version: 1, total: 1, readers: [{ principal: 'prn_bob', reads: 1 }] });
      ctx().clock.advance(25 * HOUR);
      await ctx().secrets.read(bob, path);
      expect(await ctx().secrets.readers(path, { version: 2 }, ctx().clock.now() - 24 * HOUR)).toMatchObject({ total: 1, readers: [{ principal: 'prn_bob', reads: 1 }] });
      expect(await ctx().secrets.readers(path, { version: 2 }, ctx().clock.now() - 2 * DAY)).toMatchObject({ total: 3 });
    });

    it('writes no audit event and no row for a refused put', async () => {
      const path = `${unique('refused')}/svc`;
      await ctx().secrets.put(alice, path, { value: 'a' });
      const head = await auditHead(ctx());
      const versions = await ctx().store.db.selectFrom('secret_versions').select((eb) => eb.fn.countAll<number | string>().as('n')).executeTakeFirstOrThrow();
      for (const attempt of [
        () => ctx().secrets.put(alice, path, { value: 'b', cas: 7 }),
        () => ctx().secrets.put(alice, path, { value: 'x'.repeat(70_000) }),
        () => ctx().secrets.put(alice, 'Bad/Path', { value: 'x' }),
        () => ctx().secrets.put(alice, path, { value: 'b', expiresAt: 'not a time' }),
      ]) {
        expect(await codeOf(attempt())).not.toBe('fulfilled');
      }
      expect(await auditHead(ctx())).toBe(head);
      const after = await ctx().store.db.selectFrom('secret_versions').select((eb) => eb.fn.countAll<number | string>().as('n')).executeTakeFirstOrThrow();
      expect(Number(after.n)).toBe(Number(versions.n));
    });
  });

  describe('values at rest', () => {
    it('leaves no value, nor its base64 or hex, anywhere in a dump of the database or in audit data', async () => {
      const prefix = unique('dump');
      const stringValues = ['Zebra-Quokka-7731-plaintext', 'pa$$w0rd-üñí-ßecret-99182'];
      const jsonValue = { apiKey: 'sk_live_Narwhal55Tangerine', endpoint: 'https://vault-canary.example/hook-4417' };
      const head = await auditHead(ctx());
      await ctx().secrets.put(alice, `${prefix}/a`, { value: stringValues[0]!, requestToken: 'tok-a' });
      await ctx().secrets.put(alice, `${prefix}/a`, { value: stringValues[1]!, stage: 'pending' });
      await ctx().secrets.promote(alice, `${prefix}/a`);
      await ctx().secrets.put(bob, `${prefix}/b`, { value: jsonValue, maxVersions: 2 });
      await ctx().secrets.put(bob, `${prefix}/b`, { value: { ...jsonValue, rotated: 'Okapi-Rotated-3318' } });
      await ctx().secrets.put(bob, `${prefix}/b`, { value: 'Okapi-third-version-55' });
      await ctx().secrets.moveStage(bob, `${prefix}/b`, 'canary', 2);
      await ctx().secrets.read(alice, `${prefix}/a`);
      await ctx().secrets.readers(`${prefix}/a`, {}, 0);
      await ctx().secrets.destroy(alice, `${prefix}/a`, [1]);
      await ctx().secrets.delete(alice, `${prefix}/b`);
      await ctx().secrets.restore(alice, `${prefix}/b`);
      await ctx().kek.rotate(alice);
      await ctx().kek.kick();

      const { tables, text } = await dumpDatabase(ctx());
      expect(tables).toEqual(expect.arrayContaining(['secrets', 'secret_versions', 'secret_stages', 'secret_reads', 'kek_versions', 'audit_events']));
      // The dump really holds this scenario.
      expect(text).toContain(`${prefix}/a`);
      const needles = [
        ...stringValues,
        jsonValue.apiKey,
        jsonValue.endpoint,
        JSON.stringify(jsonValue),
        'Okapi-Rotated-3318',
        'Okapi-third-version-55',
      ];
      for (const needle of needles) for (const form of encodings(needle)) expect(text, `"${needle}" as ${form}`).not.toContain(form);

      const events = await auditAfter(ctx(), head);
      expect(events.map((e) => e.action)).toEqual(
        expect.arrayContaining(['secret.created', 'secret.version.added', 'secret.promoted', 'secret.stage.moved', 'secret.versions.destroyed', 'secret.deleted', 'secret.restored', 'kek.rotated', 'kek.rewrapped']),
      );
      const audit = JSON.stringify(events);
      for (const needle of needles) expect(audit).not.toContain(needle);
      expect(allKeys(events.map((e) => e.data))).not.toContain('value');
    });
  });

  describe('ciphertexts swapped between rows', () => {
    const swap = async (a: { id: string; version: number }, b: { id: string; version: number }, column: 'sealed' | 'wrapped_key' | 'both') => {
      const db = ctx().store.db;
      const rowA = await versionRow(a.id, a.version);
      const rowB = await versionRow(b.id, b.version);
      const set = (row: typeof rowA) => (column === 'both' ? { sealed: row.sealed, wrapped_key: row.wrapped_key } : column === 'sealed' ? { sealed: row.sealed } : { wrapped_key: row.wrapped_key });
      await db.updateTable('secret_versions').set(set(rowB)).where('secret_id', '=', a.id).where('version', '=', a.version).execute();
      await db.updateTable('secret_versions').set(set(rowA)).where('secret_id', '=', b.id).where('version', '=', b.version).execute();
      ctx().secrets.clearCache();
    };

    it.each(['sealed', 'wrapped_key', 'both'] as const)('fails to decrypt when %s is swapped between two secrets, never answering the other value', async (column) => {
      const first = await ctx().secrets.put(alice, `${unique('swap')}/first`, { value: 'FIRST-value-Marmot-001' });
      const second = await ctx().secrets.put(alice, `${unique('swap')}/second`, { value: 'SECOND-value-Ibex-002' });
      await swap({ id: first.id, version: 1 }, { id: second.id, version: 1 }, column);
      for (const [made, other] of [
        [first, 'SECOND-value-Ibex-002'],
        [second, 'FIRST-value-Marmot-001'],
      ] as const) {
        expect(await codeOf(ctx().secrets.read(alice, made.path))).toBe('ERR_DECRYPTION_FAILED');
        const res = await ctx().request({ method: 'GET', url: `/v1/secrets/${made.path}` });
        const problem = expectProblem(res, 500, 'ERR_DECRYPTION_FAILED', 'internal');
        expect(problem.detail).toBe('decryption failed');
        expect(res.body).not.toContain(other);
        expect(res.body).not.toContain('-value-');
      }
    });

    it.each(['sealed', 'wrapped_key', 'both'] as const)('fails to decrypt when %s is swapped between two versions of one secret', async (column) => {
      const path = `${unique('swap')}/two-versions`;
      const one = await ctx().secrets.put(alice, path, { value: 'version-one-Lynx' });
      await ctx().secrets.put(alice, path, { value: 'version-two-Puma' });
      await swap({ id: one.id, version: 1 }, { id: one.id, version: 2 }, column);
      expect(await codeOf(ctx().secrets.read(alice, path))).toBe('ERR_DECRYPTION_FAILED');
      expect(await codeOf(ctx().secrets.read(alice, path, { version: 1 }))).toBe('ERR_DECRYPTION_FAILED');
      const res = await ctx().request({ method: 'GET', url: `/v1/secrets/${path}?version=1` });
      expect(expectProblem(res, 500, 'ERR_DECRYPTION_FAILED').detail).toBe('decryption failed');
      expect(res.body).not.toContain('version-two-Puma');
    });

    it('fails to decrypt a string value relabelled as JSON', async () => {
      const path = `${unique('swap')}/type`;
      const made = await ctx().secrets.put(alice, path, { value: '{"looks":"like json"}' });
      await ctx().store.db.updateTable('secret_versions').set({ value_type: 'json' }).where('secret_id', '=', made.id).execute();
      ctx().secrets.clearCache();
      expect(await codeOf(ctx().secrets.read(alice, path))).toBe('ERR_DECRYPTION_FAILED');
    });

    it('fails to decrypt a row whose KEK version was changed', async () => {
      const path = `${unique('swap')}/kekver`;
      const made = await ctx().secrets.put(alice, path, { value: 'kek-bound' });
      const row = await versionRow(made.id, 1);
      await ctx().store.db.updateTable('secret_versions').set({ kek_version: row.kek_version + 1 }).where('secret_id', '=', made.id).execute();
      ctx().secrets.clearCache();
      expect(await codeOf(ctx().secrets.read(alice, path))).toBe('ERR_DECRYPTION_FAILED');
    });
  });
});

function allKeys(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) for (const item of value) allKeys(item, out);
  else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      out.push(k);
      allKeys(v, out);
    }
  }
  return out;
}
