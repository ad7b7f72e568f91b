import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { KeyService, DEFAULT_KEY_POLICY } from '../../src/keys/index.js';
import { createKeyHasher, secureRandom } from '../../src/crypto/index.js';
import { ManualClock } from '../../src/shared/clock.js';
import { AppError } from '../../src/shared/errors.js';
import { testAuditLog } from '../support/context.js';
import { createTestStore, describeEachDialect, type TestStore } from '../support/databases.js';

const ctx = { actor: 'key_tester00000000000000000', requestId: 'req_test', sourceIp: '127.0.0.1' };

describeEachDialect('key service on a real database', (dialect) => {
  let testStore: TestStore;
  let keys: KeyService;
  let clock: ManualClock;
  const masterKey = randomBytes(32);

  beforeAll(async () => {
    testStore = await createTestStore(dialect);
    clock = new ManualClock('2026-11-01T00:00:00.000Z');
    keys = new KeyService({
      db: testStore.store.db,
      audit: testAuditLog(masterKey),
      dialect: testStore.store.dialect,
      clock,
      random: secureRandom,
      hasher: createKeyHasher(masterKey),
      config: DEFAULT_KEY_POLICY,
    });
  });
  afterAll(async () => {
    await keys.usage.stop();
    await testStore.cleanup();
  });

  it('stores only an HMAC of the secret, never the key or its secret part', async () => {
    const { key, record } = await keys.issue(ctx, { owner: 'store-check', scopes: ['a:b'] });
    const secret = key.split('_')[3]!.slice(0, 43);
    const row = await testStore.store.db.selectFrom('api_keys').selectAll().where('id', '=', record.id).executeTakeFirstOrThrow();
    const dump = JSON.stringify(row);
    expect(dump).not.toContain(secret);
    expect(dump).not.toContain(key);
    expect(row.hash_version).toBe(1);
    expect(row.key_hash).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const events = await testStore.store.db.selectFrom('audit_events').selectAll().execute();
    expect(JSON.stringify(events)).not.toContain(secret);
  });

  it('gives a database copied to another master key no way to verify keys', async () => {
    const { key } = await keys.issue(ctx, { owner: 'other-master' });
    const stranger = new KeyService({
      db: testStore.store.db,
      audit: testAuditLog(masterKey),
      dialect: testStore.store.dialect,
      clock,
      random: secureRandom,
      hasher: createKeyHasher(randomBytes(32)),
      config: DEFAULT_KEY_POLICY,
    });
    expect((await stranger.verify({ key })).code).toBe('NOT_FOUND');
    expect((await keys.verify({ key })).code).toBe('VALID');
  });

  it('gives exactly one successor when two rotations race', async () => {
    const { record } = await keys.issue(ctx, { owner: 'race' });
    const results = await Promise.allSettled([
      keys.rotate(ctx, record.id, { overlap: '1h' }),
      keys.rotate(ctx, record.id, { overlap: '1h' }),
      keys.rotate(ctx, record.id, { overlap: '1h' }),
    ]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(2);
    for (const failure of lost) expect((failure.reason as AppError).code).toBe('ERR_KEY_SUPERSEDED');
    const successors = await testStore.store.db.selectFrom('api_keys').select('id').where('replaces', '=', record.id).execute();
    expect(successors).toHaveLength(1);
    const rotatedEvents = await testStore.store.db
      .selectFrom('audit_events')
      .select('seq')
      .where('action', '=', 'key.rotated')
      .where('target', '=', record.id)
      .execute();
    expect(rotatedEvents).toHaveLength(1);
  });

  it('leaves nothing half-written when a change fails inside its transaction', async () => {
    const { record } = await keys.issue(ctx, { owner: 'atomic' });
    await keys.revoke(ctx, record.id, 'test');
    const before = await counts();
    await expect(keys.rotate(ctx, record.id, { overlap: '1h' })).rejects.toMatchObject({ code: 'ERR_KEY_REVOKED' });
    await expect(keys.update(ctx, record.id, { scopes: [] })).rejects.toMatchObject({ code: 'ERR_KEY_REVOKED' });
    await expect(keys.issue(ctx, { owner: 'x', ttl: '900d' })).rejects.toMatchObject({ code: 'ERR_TTL_TOO_LONG' });
    expect(await counts()).toEqual(before);
  });

  it('keeps the audit chain intact under many concurrent writers', async () => {
    const issued = await Promise.all(Array.from({ length: 40 }, (_, i) => keys.issue(ctx, { owner: `concurrent-${i}` })));
    await Promise.all(issued.map((k, i) => (i % 2 === 0 ? keys.revoke(ctx, k.record.id, 'bulk') : keys.disable(ctx, k.record.id))));
    const result = await testAuditLog(masterKey).verify(testStore.store.db, { batchSize: 7 });
    expect(result.ok).toBe(true);
    expect(result.events).toBe(result.headSeq);
    const seqs = (await testStore.store.db.selectFrom('audit_events').select('seq').orderBy('seq').execute()).map((r) => Number(r.seq));
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
  });

  it('verifies without writing: usage reaches the database only when flushed', async () => {
    const { key, record } = await keys.issue(ctx, { owner: 'usage' });
    await keys.usage.flush();
    for (let i = 0; i < 5; i++) expect((await keys.verify({ key, ip: '192.0.2.1', userAgent: 'probe/1' })).valid).toBe(true);
    const unflushed = await testStore.store.db.selectFrom('key_usage').selectAll().where('key_id', '=', record.id).execute();
    expect(unflushed).toHaveLength(0);
    await keys.usage.flush();
    const rows = await testStore.store.db.selectFrom('key_usage').selectAll().where('key_id', '=', record.id).execute();
    expect(rows.map((r) => [r.outcome, Number(r.count)])).toEqual([['VALID', 5]]);
    const row = await testStore.store.db.selectFrom('key_last_use').selectAll().where('key_id', '=', record.id).executeTakeFirstOrThrow();
    expect(row.ip).toBe('192.0.2.1');
    expect(row.user_agent).toBe('probe/1');
    expect(row.used_at).toBe(new Date(clock.now()).toISOString());
    // A second flush adds to the same minute rather than replacing it.
    await keys.verify({ key });
    await keys.usage.flush();
    const again = await testStore.store.db.selectFrom('key_usage').select('count').where('key_id', '=', record.id).executeTakeFirstOrThrow();
    expect(Number(again.count)).toBe(6);
  });

  it('flushes pending usage on a clean stop', async () => {
    const { key, record } = await keys.issue(ctx, { owner: 'stop-flush' });
    await keys.verify({ key });
    await keys.usage.stop();
    const rows = await testStore.store.db.selectFrom('key_usage').selectAll().where('key_id', '=', record.id).execute();
    expect(rows).toHaveLength(1);
  });

  it('answers REVOKED on the very next verify even when the row was cached', async () => {
    const { key, record } = await keys.issue(ctx, { owner: 'cache' });
    expect((await keys.verify({ key })).code).toBe('VALID');
    await keys.revoke(ctx, record.id, 'leak');
    expect((await keys.verify({ key })).code).toBe('REVOKED');
  });

  it('does not cache a stale row when a load races a revoke', async () => {
    const { key, record } = await keys.issue(ctx, { owner: 'race-cache' });
    // Start a load (cache miss) and a revoke together; afterwards the answer must be REVOKED.
    const pending = keys.verify({ key });
    await keys.revoke(ctx, record.id, 'race');
    await pending;
    expect((await keys.verify({ key })).code).toBe('REVOKED');
  });

  it('sees a revoke made by another server once it reads the change feed', async () => {
    const other = new KeyService({
      db: testStore.store.db,
      audit: testAuditLog(masterKey),
      dialect: testStore.store.dialect,
      clock,
      random: secureRandom,
      hasher: createKeyHasher(masterKey),
      config: DEFAULT_KEY_POLICY,
    });
    await other.changes.poll();
    const { key, record } = await keys.issue(ctx, { owner: 'two-servers' });
    expect((await other.verify({ key })).code).toBe('VALID');
    await keys.revoke(ctx, record.id, 'revoked on the first server');
    // Still cached on the other server until it reads the feed…
    expect((await other.verify({ key })).code).toBe('VALID');
    await other.changes.poll();
    expect((await other.verify({ key })).code).toBe('REVOKED');
    await other.usage.stop();
  });

  it('runs migrations again as a no-op', async () => {
    expect(await testStore.store.migrate()).toEqual([]);
    const tables = await sql<{ n: number }>`select count(*) as n from api_keys`.execute(testStore.store.db);
    expect(Number(tables.rows[0]!.n)).toBeGreaterThan(0);
  });

  async function counts() {
    const [k, a, l] = await Promise.all([
      testStore.store.db.selectFrom('api_keys').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
      testStore.store.db.selectFrom('audit_events').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
      testStore.store.db.selectFrom('key_labels').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
    ]);
    return [Number(k.n), Number(a.n), Number(l.n)];
  }
});
