/**
 * A write that picked its KEK version just before a rotation must not be missed by `retire`:
 * the writer holds the version (a share lock on PostgreSQL, the single writer on SQLite) until
 * it commits, and retire locks the version before it counts the data keys that use it.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import { createLocalKekProvider, secureRandom } from '../../src/crypto/index.js';
import { KekService } from '../../src/secrets/index.js';
import { ManualClock } from '../../src/shared/clock.js';
import { AppError } from '../../src/shared/errors.js';
import { testAuditLog } from '../support/context.js';
import { createTestStore, describeEachDialect, postgresUrl, type TestStore } from '../support/databases.js';
import { waitUntil } from '../support/wait.js';

const ctx = { actor: 'key_tester00000000000000000' };
const NOW = '2026-11-01T00:00:00.000Z';

describeEachDialect('KEK retire and a racing write', (dialect) => {
  let testStore: TestStore;
  let kek: KekService;

  beforeAll(async () => {
    testStore = await createTestStore(dialect);
    kek = new KekService({ db: testStore.store.db, audit: testAuditLog(), dialect: testStore.store.dialect, clock: new ManualClock(NOW), kek: createLocalKekProvider(randomBytes(32), secureRandom) });
    await kek.initialise();
  });
  afterAll(async () => {
    await kek.stop();
    await testStore.cleanup();
  });

  it('refuses to retire a version a write still in flight is sealing under', async () => {
    let picked!: () => void;
    const versionPicked = new Promise<void>((resolve) => (picked = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const { db } = testStore.store;

    let writerPid = 0;
    const write = db.transaction().execute(async (trx) => {
      const version = await kek.versionForWrite(trx);
      if (dialect === 'postgres') writerPid = Number((await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx)).rows[0]!.pid);
      picked();
      await released;
      await trx
        .insertInto('secrets')
        .values({ id: 'sec_race000000000000000000', path: 'race/s', owner: 'o', description: '', labels: '{}', expires_at: null, max_versions: 20, latest_version: 1, created_at: NOW, created_by: 'x', updated_at: NOW, deleted_at: null, deletion_date: null })
        .execute();
      await trx
        .insertInto('secret_versions')
        .values({ secret_id: 'sec_race000000000000000000', version: 1, value_type: 'string', envelope_format: 1, alg: 'A256GCM', kek_id: 'local', kek_version: version, wrapped_key: 'AA==', sealed: 'AA==', request_token: null, value_digest: null, created_at: NOW, created_by: 'x', destroyed_at: null })
        .execute();
      return version;
    });
    await versionPicked;
    // The rotation inserts version 2 beside the held row (on SQLite it waits for the writer).
    const rotating = kek.rotate(ctx);
    await kek.stop(); // no re-wrap job here: only the write and retire race
    let rotated = false;
    let retireSettled = false;
    const retiring = rotating
      .then(() => {
        rotated = true;
        return kek.retire(ctx, 1);
      })
      .finally(() => {
        retireSettled = true;
      });
    // Awaited below; handled here too so a failed wait does not also report an unhandled rejection.
    retiring.catch(() => undefined);
    try {
      if (dialect === 'postgres') {
        // The write commits only once retire is blocked on the version row the write holds: the
        // interleaving this test is about, forced rather than hoped for. Without the share lock,
        // retire would finish first (and retire version 1), and this wait would fail.
        const probe = new pg.Client({ connectionString: postgresUrl() });
        await probe.connect();
        try {
          await waitUntil('retire to wait for the writer\'s lock', async () => {
            if (retireSettled) throw new Error('retire finished while the write was still open');
            const { rows } = await probe.query('select count(*)::int as n from pg_stat_activity where $1 = any(pg_blocking_pids(pid))', [writerPid]);
            return rows[0].n > 0;
          });
        } finally {
          await probe.end();
        }
        expect(rotated).toBe(true);
      } else {
        // One connection, one writer: rotate (and retire after it) queue behind the open write.
        await new Promise((resolve) => setImmediate(resolve));
        expect(rotated).toBe(false);
      }
    } finally {
      // Let the write go even when the interleaving was not reached, so the test ends.
      release();
    }
    expect(await write).toBe(1);
    const refused = await retiring.catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(AppError);
    expect((refused as AppError).code).toBe('ERR_KEK_VERSION_IN_USE');
    expect((await kek.status()).versions.map((v) => [v.version, v.state, v.dataKeys])).toEqual([
      [1, 'active', 1],
      [2, 'active', 0],
    ]);
  });
});
