import { afterEach, beforeEach, expect, it } from 'vitest';
import { sql } from 'kysely';
import { hashEvent, listAudit } from '../../src/audit/index.js';
import { testAuditLog } from '../support/context.js';
import { createTestStore, describeEachDialect, type TestStore } from '../support/databases.js';

describeEachDialect('hash-chained audit log', (dialect) => {
  const audit = testAuditLog();
  let t: TestStore;
  beforeEach(async () => {
    t = await createTestStore(dialect);
    for (let i = 1; i <= 6; i++) {
      await t.store.db.transaction().execute((trx) =>
        audit.append(trx, { actor: 'key_actor', requestId: `req_${i}`, sourceIp: '127.0.0.1' }, { action: 'key.issued', target: `key_${i}`, data: { n: i } }, `2026-11-01T00:00:0${i}.000Z`),
      );
    }
  });
  afterEach(async () => t.cleanup());

  it('links each event to the one before it, from a zero genesis hash', async () => {
    const events = await listAudit(t.store.db, { limit: 100 });
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(events[0]!.prevHash).toBe('0'.repeat(64));
    for (let i = 1; i < events.length; i++) expect(events[i]!.prevHash).toBe(events[i - 1]!.hash);
    expect(await audit.verify(t.store.db)).toMatchObject({ ok: true, events: 6, headSeq: 6 });
  });

  it('appends a batch (over one insert chunk) exactly as one-by-one appends would chain it', async () => {
    const context = { actor: 'key_actor', requestId: 'req_batch', sourceIp: '10.0.0.1' };
    const events = Array.from({ length: 2_345 }, (_, i) => ({ action: 'key.revoked', target: `key_b${i}`, data: { reason: 'batch', n: i } }));
    const last = await t.store.db.transaction().execute((trx) => audit.appendBatch(trx, context, events, '2026-11-01T00:01:00.000Z'));
    expect(last).toBe(6 + 2_345);
    expect(await t.store.db.transaction().execute((trx) => audit.appendBatch(trx, context, [], '2026-11-01T00:01:00.000Z'))).toBeUndefined();
    await t.store.db.transaction().execute((trx) => audit.append(trx, context, { action: 'after' }, '2026-11-01T00:02:00.000Z'));
    const stored = await listAudit(t.store.db, { after: 6, limit: 3_000 });
    expect(stored).toHaveLength(2_346);
    expect(stored[0]).toMatchObject({ seq: 7, action: 'key.revoked', target: 'key_b0', actor: 'key_actor', requestId: 'req_batch', sourceIp: '10.0.0.1', data: { reason: 'batch', n: 0 } });
    expect(stored[2_344]).toMatchObject({ seq: 2_351, target: 'key_b2344', data: { n: 2_344 } });
    expect(stored[2_345]).toMatchObject({ seq: 2_352, action: 'after', prevHash: stored[2_344]!.hash });
    expect(await audit.verify(t.store.db)).toMatchObject({ ok: true, events: 2_352, headSeq: 2_352 });
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

  it('names reordered events even when the forger rehashed them', async () => {
    // Swap the contents of events 2 and 3, renumbering and recomputing their own hashes.
    const rows = await t.store.db.selectFrom('audit_events').selectAll().where('seq', 'in', [2, 3]).orderBy('seq').execute();
    const [two, three] = rows.map((r) => ({ ...r, seq: Number(r.seq) }));
    const swapped = [
      { ...three!, seq: 2, prev_hash: two!.prev_hash },
      { ...two!, seq: 3, prev_hash: three!.prev_hash },
    ].map(({ hash: _hash, ...rest }) => ({ ...rest, hash: hashEvent(rest) }));
    await t.store.db.deleteFrom('audit_events').where('seq', 'in', [2, 3]).execute();
    await t.store.db.insertInto('audit_events').values(swapped).execute();
    const result = await audit.verify(t.store.db);
    expect(result.ok).toBe(false);
    expect(result.problem).toMatchObject({ seq: 3, kind: 'reordered' });
  });

  it('reports a head that no longer matches the last event', async () => {
    await sql`update audit_head set hash = ${'f'.repeat(64)} where id = 1`.execute(t.store.db);
    expect((await audit.verify(t.store.db)).problem).toMatchObject({ seq: 6, kind: 'edited' });
  });

  it('reports progress while checking in batches', async () => {
    const seen: number[] = [];
    await audit.verify(t.store.db, { batchSize: 2, onProgress: (done) => seen.push(done) });
    expect(seen).toEqual([2, 4, 6]);
  });
});
