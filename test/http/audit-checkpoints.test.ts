import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { parseCheckpoint } from '../../src/audit/index.js';
import { describeEachDialect } from '../support/databases.js';
import { expectProblem, useContext } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'keysmith-checkpoints-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describeEachDialect('audit checkpoints API', (dialect) => {
  const file = join(dir, `${dialect}.jsonl`);
  const ctx = useContext(dialect, { checkpointsFile: file });
  const lines = () => readFileSync(file, 'utf8').trim().split('\n');

  describe('POST /v1/audit/checkpoints', () => {
    it('signs the head, writes it to the server’s file once per head, and answers the line', async () => {
      const reader = await ctx().token(['audit:read']);
      const first = await ctx().request({ method: 'POST', url: '/v1/audit/checkpoints', token: reader });
      expect(first.statusCode, first.body).toBe(200);
      const body = first.json() as { checkpoint: { seq: number; keyId: string }; line: string; sinks: string[] };
      expect(body.sinks).toEqual([file]);
      expect(lines()).toEqual([body.line]);
      expect(parseCheckpoint(body.line)).toEqual(body.checkpoint);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const head = await ctx().store.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow();
      expect(body.checkpoint.seq).toBe(Number(head.seq));
      // Asking again with nothing new adds nothing to the file.
      const again = await ctx().request({ method: 'POST', url: '/v1/audit/checkpoints', token: reader });
      expect(again.json()).toMatchObject({ sinks: [], checkpoint: { seq: body.checkpoint.seq } });
      expect(lines()).toHaveLength(1);
    });

    it('answers 401 without a token and 403 without audit:read', async () => {
      expectProblem(await ctx().request({ method: 'POST', url: '/v1/audit/checkpoints', token: null }), 401, 'ERR_UNAUTHENTICATED');
      const token = await ctx().token(['keys:read']);
      expect(expectProblem(await ctx().request({ method: 'POST', url: '/v1/audit/checkpoints', token }), 403, 'ERR_FORBIDDEN').detail).toContain('audit:read');
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/audit/checkpoint-key', token }), 403, 'ERR_FORBIDDEN');
    });
  });

  it('GET /v1/audit/checkpoint-key answers the key that signed the checkpoints', async () => {
    const res = await ctx().request({ method: 'GET', url: '/v1/audit/checkpoint-key' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ algorithm: 'Ed25519', keyId: ctx().audit.publicKey.keyId, publicKey: ctx().audit.publicKey.base64 });
    expect(JSON.parse(lines()[0]!).keyId).toBe(ctx().audit.publicKey.keyId);
  });

  describe('POST /v1/audit/verify against checkpoints', () => {
    it('holds the log to the server’s checkpoints file and to checkpoints sent in the body', async () => {
      await ctx().request({ method: 'POST', url: '/v1/keys', body: { owner: 'after-checkpoint' } });
      // On-demand lines are at most one a second (test/security/audit-abuse.test.ts).
      ctx().clock.advance(1_000);
      const signed = await ctx().request({ method: 'POST', url: '/v1/audit/checkpoints' });
      const checkpoint = signed.json().checkpoint as { seq: number; hash: string };
      const ok = await ctx().request({ method: 'POST', url: '/v1/audit/verify', body: { checkpoints: [checkpoint] } });
      expect(ok.json()).toMatchObject({ ok: true, checkpoints: 3 });

      const forged = await ctx().request({ method: 'POST', url: '/v1/audit/verify', body: { checkpoints: [{ ...checkpoint, seq: 1 }] } });
      expect(forged.json()).toMatchObject({ ok: false, problem: { kind: 'bad-checkpoint', checkpoint: { source: 'request', line: 1 } } });
      expectProblem(await ctx().request({ method: 'POST', url: '/v1/audit/verify', body: { checkpoints: [{ seq: 'x' }] } }), 400, 'ERR_INVALID_REQUEST');

      // Cut the end off and make the head agree: only the checkpoints file can tell.
      const db = ctx().store.db;
      const kept = await db.selectFrom('audit_events').select(['seq', 'hash']).where('seq', '=', checkpoint.seq - 2).executeTakeFirstOrThrow();
      const removed = await db.selectFrom('audit_events').selectAll().where('seq', '>', kept.seq).execute();
      await db.deleteFrom('audit_events').where('seq', '>', kept.seq).execute();
      await sql`update audit_head set seq = ${kept.seq}, hash = ${kept.hash} where id = 1`.execute(db);
      const cut = await ctx().request({ method: 'POST', url: '/v1/audit/verify' });
      expect(cut.json()).toMatchObject({ ok: false, problem: { kind: 'truncated', seq: Number(kept.seq) + 1, checkpoint: { source: file } } });
      // Put it back, for the tests after this one.
      await db.insertInto('audit_events').values(removed).execute();
      await sql`update audit_head set seq = ${checkpoint.seq}, hash = ${checkpoint.hash} where id = 1`.execute(db);
      expect((await ctx().request({ method: 'POST', url: '/v1/audit/verify' })).json()).toMatchObject({ ok: true });
    });
  });
});
