/**
 * Issue 9 §2: someone with write access to the database only (not the master key, not the
 * checkpoints file) tampers with the audit log. Every case must be caught, on both databases,
 * and the first bad event or checkpoint named. Truncations and resets leave a consistent
 * database behind: only a checkpoint kept outside it can tell, so one is written first.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { GENESIS_HASH, SCHEME_SHA256, formatCheckpoint, hashEvent, parseCheckpoints, type CheckpointEntry } from '../../src/audit/index.js';
import { createTestContext, testAuditLog, type TestContext } from '../support/context.js';
import { describeEachDialect } from '../support/databases.js';

describeEachDialect('audit log tampering with database access only', (dialect) => {
  let ctx: TestContext;
  let checkpoint: CheckpointEntry[];
  let headAtCheckpoint: number;

  const db = () => ctx.store.db;
  const verify = (checkpoints: readonly CheckpointEntry[] = checkpoint) => ctx.audit.verify(db(), { checkpoints });
  const head = async () => db().selectFrom('audit_head').selectAll().where('id', '=', 1).executeTakeFirst();
  const rows = async () => (await db().selectFrom('audit_events').selectAll().orderBy('seq').execute()).map((r) => ({ ...r, seq: Number(r.seq) }));
  const moveHead = (seq: number, hash: string) => sql`update audit_head set seq = ${seq}, hash = ${hash} where id = 1`.execute(db());

  /** What the attacker does with the old algorithm: recompute every hash from `from` on with plain SHA-256 and point the head at the end. */
  const recomputeWithSha256 = async (from: number) => {
    const all = await rows();
    let prev = from === 1 ? GENESIS_HASH : all.find((r) => r.seq === from - 1)!.hash;
    for (const row of all.filter((r) => r.seq >= from)) {
      const { hash: _old, scheme: _scheme, ...rest } = row;
      const hash = hashEvent({ ...rest, prev_hash: prev });
      await db().updateTable('audit_events').set({ prev_hash: prev, hash, scheme: SCHEME_SHA256 }).where('seq', '=', row.seq).execute();
      prev = hash;
    }
    await moveHead(all[all.length - 1]!.seq, prev);
  };

  beforeEach(async () => {
    ctx = await createTestContext(dialect);
    for (let i = 0; i < 6; i++) expect((await ctx.request({ method: 'POST', url: '/v1/keys', body: { owner: `tamper-${i}` } })).statusCode).toBe(201);
    // The server signs the head (as it does every minute and at shutdown), kept outside the database.
    const signed = await ctx.audit.checkpoint(db(), new Date(ctx.clock.now()).toISOString());
    checkpoint = parseCheckpoints(formatCheckpoint(signed!), 'checkpoints.jsonl');
    headAtCheckpoint = signed!.seq;
    // Then life goes on: two more events after the checkpoint.
    for (let i = 0; i < 2; i++) await ctx.request({ method: 'POST', url: '/v1/keys', body: { owner: `later-${i}` } });
    expect(await verify()).toMatchObject({ ok: true, checkpoints: 1, keyedFrom: 1 });
  });
  afterEach(async () => ctx.close());

  describe('the six tamperings of the report', () => {
    it('(a) deletes the last rows and the audit_head row', async () => {
      await db().deleteFrom('audit_events').where('seq', '>', headAtCheckpoint - 3).execute();
      await db().deleteFrom('audit_head').execute();
      const result = await verify();
      expect(result).toMatchObject({ ok: false, problem: { seq: headAtCheckpoint - 2, kind: 'truncated', checkpoint: { source: 'checkpoints.jsonl', line: 1 } } });
      expect(result.problem!.message).toContain(`signed event #${headAtCheckpoint}`);
      // Without the checkpoint, the missing head row alone gives it away.
      expect(await verify([])).toMatchObject({ ok: false, problem: { kind: 'missing-head' } });
    });

    it('(b) moves the head back to an earlier event (and drops the rows after it)', async () => {
      const earlier = (await rows()).find((r) => r.seq === headAtCheckpoint - 2)!;
      await db().deleteFrom('audit_events').where('seq', '>', earlier.seq).execute();
      await moveHead(earlier.seq, earlier.hash);
      expect(await verify([])).toMatchObject({ ok: true });
      expect(await verify()).toMatchObject({ ok: false, problem: { seq: earlier.seq + 1, kind: 'truncated' } });
    });

    it('(b′) moves the head back and leaves the rows', async () => {
      const earlier = (await rows()).find((r) => r.seq === headAtCheckpoint - 2)!;
      await moveHead(earlier.seq, earlier.hash);
      expect(await verify([])).toMatchObject({ ok: false, problem: { kind: 'edited' } });
    });

    it('(c) edits a row and recomputes the chain with plain SHA-256, head included', async () => {
      const target = 3;
      await db().updateTable('audit_events').set({ data: JSON.stringify({ owner: 'mallory' }) }).where('seq', '=', target).execute();
      await recomputeWithSha256(1);
      // The checkpoint names the rewrite at the event it signed…
      expect(await verify()).toMatchObject({ ok: false, problem: { seq: headAtCheckpoint, kind: 'rewritten', checkpoint: { line: 1 } } });
      // …and without one, a log with no keyed event is not a log this version wrote.
      expect(await verify([])).toMatchObject({ ok: false, problem: { kind: 'unkeyed' } });
    });

    it('(c′) recomputes with plain SHA-256 from the edited row only, keeping the keyed marker before it', async () => {
      await db().updateTable('audit_events').set({ data: JSON.stringify({ owner: 'mallory' }) }).where('seq', '=', 4).execute();
      await recomputeWithSha256(4);
      expect(await verify([])).toMatchObject({ ok: false, problem: { seq: 4, kind: 'unkeyed' } });
    });

    it('(c″) recomputes with plain SHA-256 but leaves the keyed scheme on every row', async () => {
      await db().updateTable('audit_events').set({ data: JSON.stringify({ owner: 'mallory' }) }).where('seq', '=', 4).execute();
      await recomputeWithSha256(4);
      await db().updateTable('audit_events').set({ scheme: 'hmac-sha256:v1' }).execute();
      expect(await verify([])).toMatchObject({ ok: false, problem: { seq: 4, kind: 'edited' } });
    });

    it('(d) deletes every row and resets the head', async () => {
      await db().deleteFrom('audit_events').execute();
      await moveHead(0, GENESIS_HASH);
      const result = await verify();
      expect(result).toMatchObject({ ok: false, events: 0, problem: { seq: 1, kind: 'truncated' } });
      expect(result.problem!.message).toContain('the log is empty');
      expect(await verify([])).toMatchObject({ ok: false, problem: { seq: 1, kind: 'empty' } });
    });
  });

  describe('the naive ones', () => {
    it('edits a row without recomputing anything', async () => {
      await db().updateTable('audit_events').set({ actor: 'key_someoneElse000000000000' }).where('seq', '=', 5).execute();
      expect(await verify()).toMatchObject({ ok: false, problem: { seq: 5, kind: 'edited' } });
    });

    it('deletes a middle row', async () => {
      await db().deleteFrom('audit_events').where('seq', '=', 4).execute();
      expect(await verify()).toMatchObject({ ok: false, problem: { seq: 4, kind: 'deleted' } });
    });

    it('deletes the first event (the keyed marker)', async () => {
      await db().deleteFrom('audit_events').where('seq', '=', 1).execute();
      const result = await verify([]);
      expect(result).toMatchObject({ ok: false, problem: { seq: 1, kind: 'deleted' } });
      expect(result.problem!.message).toContain('the log begins at event #2');
    });

    it('deletes the head row only', async () => {
      await db().deleteFrom('audit_head').execute();
      expect(await head()).toBeUndefined();
      expect(await verify([])).toMatchObject({ ok: false, problem: { kind: 'missing-head' } });
    });

    it('empties the log but leaves the head', async () => {
      await db().deleteFrom('audit_events').execute();
      expect(await verify([])).toMatchObject({ ok: false, events: 0, problem: { seq: 1, kind: 'empty' } });
    });

    it('appends a plain SHA-256 event after the switch', async () => {
      const last = (await rows()).at(-1)!;
      const row = { seq: last.seq + 1, time: last.time, actor: 'system', action: 'key.revoked', target: 'key_x', request_id: null, source_ip: null, data: '{}', prev_hash: last.hash };
      const hash = hashEvent(row);
      await db().insertInto('audit_events').values({ ...row, hash, scheme: SCHEME_SHA256 }).execute();
      await moveHead(row.seq, hash);
      expect(await verify()).toMatchObject({ ok: false, problem: { seq: row.seq, kind: 'unkeyed' } });
    });

    it('inserts an event that claims the keyed scheme', async () => {
      const last = (await rows()).at(-1)!;
      const row = { seq: last.seq + 1, time: last.time, actor: 'system', action: 'key.revoked', target: 'key_x', request_id: null, source_ip: null, data: '{}', prev_hash: last.hash };
      await db().insertInto('audit_events').values({ ...row, hash: hashEvent(row), scheme: 'hmac-sha256:v1' }).execute();
      expect(await verify()).toMatchObject({ ok: false, problem: { seq: row.seq, kind: 'edited' } });
    });
  });

  describe('checkpoints', () => {
    it('refuses a checkpoint whose fields were changed after signing', async () => {
      const line = JSON.parse(formatCheckpoint(checkpoint[0]!.checkpoint!)) as Record<string, unknown>;
      const forged = parseCheckpoints(JSON.stringify({ ...line, seq: 2 }), 'forged.jsonl');
      expect(await verify(forged)).toMatchObject({ ok: false, problem: { seq: 2, kind: 'bad-checkpoint', checkpoint: { source: 'forged.jsonl', line: 1 } } });
    });

    it('refuses a checkpoint signed under another master key, and a line that is not one', async () => {
      const other = await testAuditLog(Buffer.alloc(32, 9)).checkpoint(db(), '2026-11-01T00:00:00.000Z');
      expect(await verify(parseCheckpoints(formatCheckpoint(other!), 'other.jsonl'))).toMatchObject({ ok: false, problem: { kind: 'bad-checkpoint' } });
      const result = await verify(parseCheckpoints(`${formatCheckpoint(checkpoint[0]!.checkpoint!)}\nnot json\n`, 'mixed.jsonl'));
      expect(result).toMatchObject({ ok: false, problem: { kind: 'bad-checkpoint', checkpoint: { line: 2 } } });
    });

    it('will not sign a head that does not match its event', async () => {
      await moveHead(3, 'a'.repeat(64));
      await expect(ctx.audit.checkpoint(db(), '2026-11-01T00:00:00.000Z')).rejects.toMatchObject({ code: 'ERR_AUDIT_CHECKPOINT_REFUSED' });
    });
  });
});
