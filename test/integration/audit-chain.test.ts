import { afterEach, beforeEach, expect, it } from 'vitest';
import { sql } from 'kysely';
import { createHmac } from 'node:crypto';
import { KEYED_MARKER_ACTION, SCHEME_KEYED, hashEvent, listAudit } from '../../src/audit/index.js';
import { migrations } from '../../src/store/index.js';
import { deriveSecret } from '../../src/crypto/index.js';
import { TEST_MASTER_KEY, testAuditLog } from '../support/context.js';
import { createTestStore, describeEachDialect, type TestStore } from '../support/databases.js';

describeEachDialect('hash-chained audit log', (dialect) => {
  const audit = testAuditLog();
  let t: TestStore;
  beforeEach(async () => {
    t = await createTestStore(dialect);
    // Events #2…#7 after the keyed-chain marker (#1), written by the first append on a new database.
    for (let i = 1; i <= 6; i++) {
      await t.store.db.transaction().execute((trx) =>
        audit.append(trx, { actor: 'key_actor', requestId: `req_${i}`, sourceIp: '127.0.0.1' }, { action: 'key.issued', target: `key_${i}`, data: { n: i } }, `2026-11-01T00:00:0${i}.000Z`),
      );
    }
  });
  afterEach(async () => t.cleanup());

  it('begins a new log with the keyed-chain marker and links each event to the one before it, from a zero genesis hash', async () => {
    const events = await listAudit(t.store.db, { limit: 100 });
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(events[0]).toMatchObject({ action: KEYED_MARKER_ACTION, actor: 'system', data: { scheme: SCHEME_KEYED, unkeyedEvents: 0 }, prevHash: '0'.repeat(64) });
    for (let i = 1; i < events.length; i++) expect(events[i]!.prevHash).toBe(events[i - 1]!.hash);
    const schemes = await t.store.db.selectFrom('audit_events').select('scheme').execute();
    expect(new Set(schemes.map((r) => r.scheme))).toEqual(new Set([SCHEME_KEYED]));
    expect(await audit.verify(t.store.db)).toMatchObject({ ok: true, events: 7, headSeq: 7, keyedFrom: 1 });
    expect(await audit.keyChain(t.store.db, '2026-11-01T00:00:09.000Z')).toBe(false);
  });

  it('hashes each event with HMAC-SHA256 under the chain key, which the database does not hold', async () => {
    const row = await t.store.db.selectFrom('audit_events').selectAll().where('seq', '=', 3).executeTakeFirstOrThrow();
    const canonical = JSON.stringify([Number(row.seq), row.time, row.actor, row.action, row.target, row.request_id, row.source_ip, row.data, row.prev_hash]);
    expect(row.hash).toBe(createHmac('sha256', deriveSecret(TEST_MASTER_KEY, 'audit-chain:v1')).update(canonical).digest('hex'));
    // Under another master key the same database does not verify.
    expect(await testAuditLog(Buffer.alloc(32, 7)).verify(t.store.db)).toMatchObject({ ok: false, problem: { seq: 1, kind: 'edited' } });
  });

  it('appends a batch (over one insert chunk) exactly as one-by-one appends would chain it', async () => {
    const context = { actor: 'key_actor', requestId: 'req_batch', sourceIp: '10.0.0.1' };
    const events = Array.from({ length: 2_345 }, (_, i) => ({ action: 'key.revoked', target: `key_b${i}`, data: { reason: 'batch', n: i } }));
    const last = await t.store.db.transaction().execute((trx) => audit.appendBatch(trx, context, events, '2026-11-01T00:01:00.000Z'));
    expect(last).toBe(7 + 2_345);
    expect(await t.store.db.transaction().execute((trx) => audit.appendBatch(trx, context, [], '2026-11-01T00:01:00.000Z'))).toBeUndefined();
    await t.store.db.transaction().execute((trx) => audit.append(trx, context, { action: 'after' }, '2026-11-01T00:02:00.000Z'));
    const stored = await listAudit(t.store.db, { after: 7, limit: 3_000 });
    expect(stored).toHaveLength(2_346);
    expect(stored[0]).toMatchObject({ seq: 8, action: 'key.revoked', target: 'key_b0', actor: 'key_actor', requestId: 'req_batch', sourceIp: '10.0.0.1', data: { reason: 'batch', n: 0 } });
    expect(stored[2_344]).toMatchObject({ seq: 2_352, target: 'key_b2344', data: { n: 2_344 } });
    expect(stored[2_345]).toMatchObject({ seq: 2_353, action: 'after', prevHash: stored[2_344]!.hash });
    expect(await audit.verify(t.store.db)).toMatchObject({ ok: true, events: 2_353, headSeq: 2_353 });
  });

  it('names an edited event', async () => {
    await t.store.db.updateTable('audit_events').set({ data: '{"n":99}' }).where('seq', '=', 4).execute();
    expect((await audit.verify(t.store.db)).problem).toMatchObject({ seq: 4, kind: 'edited' });
  });

  it('names a deleted event in the middle', async () => {
    await t.store.db.deleteFrom('audit_events').where('seq', '=', 3).execute();
    expect((await audit.verify(t.store.db)).problem).toMatchObject({ seq: 3, kind: 'deleted' });
  });

  it('names the end of the log when its last events were deleted', async () => {
    await t.store.db.deleteFrom('audit_events').where('seq', '>=', 5).execute();
    expect((await audit.verify(t.store.db)).problem).toMatchObject({ seq: 5, kind: 'truncated' });
  });

  it('names reordered events even when the forger swapped them whole', async () => {
    const rows = await t.store.db.selectFrom('audit_events').selectAll().where('seq', 'in', [2, 3]).orderBy('seq').execute();
    const [two, three] = rows;
    await t.store.db.deleteFrom('audit_events').where('seq', 'in', [2, 3]).execute();
    await t.store.db.insertInto('audit_events').values([{ ...three!, seq: 2 }, { ...two!, seq: 3 }]).execute();
    const result = await audit.verify(t.store.db);
    expect(result.ok).toBe(false);
    expect(result.problem).toMatchObject({ seq: 2, kind: 'edited' });
  });

  it('reports a head that no longer matches the last event', async () => {
    await sql`update audit_head set hash = ${'f'.repeat(64)} where id = 1`.execute(t.store.db);
    expect((await audit.verify(t.store.db)).problem).toMatchObject({ seq: 7, kind: 'edited' });
  });

  it('reports progress while checking in batches', async () => {
    const seen: number[] = [];
    await audit.verify(t.store.db, { batchSize: 2, onProgress: (done) => seen.push(done) });
    expect(seen).toEqual([2, 4, 6, 7]);
  });
});

describeEachDialect('an audit log from before the keyed chain', (dialect) => {
  const audit = testAuditLog();
  let t: TestStore;
  beforeEach(async () => {
    t = await createTestStore(dialect);
    // The database as the previous version left it: no scheme columns, a plain SHA-256 chain of four events.
    const keyed = migrations['0006-audit-keyed-chain']!;
    await keyed.down!(t.store.db as never);
    let prev = '0'.repeat(64);
    for (let seq = 1; seq <= 4; seq++) {
      const row = { seq, time: `2026-10-01T00:00:0${seq}.000Z`, actor: 'system:init', action: 'key.issued', target: `key_${seq}`, request_id: null, source_ip: null, data: '{}', prev_hash: prev };
      prev = hashEvent(row);
      await sql`insert into audit_events (seq, time, actor, action, target, request_id, source_ip, data, prev_hash, hash)
        values (${seq}, ${row.time}, ${row.actor}, ${row.action}, ${row.target}, ${null}, ${null}, ${row.data}, ${row.prev_hash}, ${prev})`.execute(t.store.db);
    }
    await sql`update audit_head set seq = 4, hash = ${prev} where id = 1`.execute(t.store.db);
    await keyed.up(t.store.db as never);
  });
  afterEach(async () => t.cleanup());

  it('keeps its old events verifying and switches at a keyed marker event', async () => {
    expect(await audit.verify(t.store.db)).toMatchObject({ ok: false, problem: { kind: 'unkeyed' } });
    expect(await audit.keyChain(t.store.db, '2026-11-01T00:00:00.000Z')).toBe(true);
    await t.store.db.transaction().execute((trx) => audit.append(trx, { actor: 'key_actor' }, { action: 'key.revoked', target: 'key_1' }, '2026-11-01T00:00:01.000Z'));
    const events = await t.store.db.selectFrom('audit_events').select(['seq', 'action', 'scheme', 'data']).orderBy('seq').execute();
    expect(events.map((e) => [Number(e.seq), e.scheme])).toEqual([[1, 'sha256'], [2, 'sha256'], [3, 'sha256'], [4, 'sha256'], [5, SCHEME_KEYED], [6, SCHEME_KEYED]]);
    expect(events[4]).toMatchObject({ action: KEYED_MARKER_ACTION, data: JSON.stringify({ scheme: SCHEME_KEYED, unkeyedEvents: 4 }) });
    expect(await audit.verify(t.store.db)).toMatchObject({ ok: true, events: 6, keyedFrom: 5 });
    // An old event is still checked under its own scheme.
    await t.store.db.updateTable('audit_events').set({ target: 'key_9' }).where('seq', '=', 2).execute();
    expect(await audit.verify(t.store.db)).toMatchObject({ ok: false, problem: { seq: 2, kind: 'edited' } });
  });

  it('writes the marker with the first append when no start came before it', async () => {
    await t.store.db.transaction().execute((trx) => audit.appendBatch(trx, { actor: 'key_actor' }, [{ action: 'a' }, { action: 'b' }], '2026-11-01T00:00:01.000Z'));
    const actions = await t.store.db.selectFrom('audit_events').select('action').where('seq', '>', 4).orderBy('seq').execute();
    expect(actions.map((a) => a.action)).toEqual([KEYED_MARKER_ACTION, 'a', 'b']);
    expect(await audit.verify(t.store.db)).toMatchObject({ ok: true, events: 7, headSeq: 7, keyedFrom: 5 });
  });
});
