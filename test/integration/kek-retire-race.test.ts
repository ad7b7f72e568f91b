/**
 * A write that picked its KEK version just before a rotation must not be missed by `retire`:
 * the writer holds the version (a share lock on PostgreSQL, the single writer on SQLite) until
 * it commits, and retire locks the version before it counts the data keys that use it.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { createLocalKekProvider, secureRandom } from '../../src/crypto/index.js';
import { KekService } from '../../src/secrets/index.js';
import { ManualClock } from '../../src/shared/clock.js';
import { AppError } from '../../src/shared/errors.js';
import { testAuditLog } from '../support/context.js';
import { createTestStore, describeEachDialect, type TestStore } from '../support/databases.js';

const ctx = { actor: 'key_tester00000000000000000' };
const NOW = '2026-11-01T00:00:00.000Z';

describeEachDialect('KEK retire and a racing write', (dialect) => {
  let testStore: TestStore;
  let kek: KekService;

  beforeAll(async () => {
    testStore = await createTestStore(dialect);
    kek = new KekService({ db: testStore.store.db, audit: testAuditLog(), dialect, clock: new ManualClock(NOW), kek: createLocalKekProvider(randomBytes(32), secureRandom) });
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

    const write = db.transaction().execute(async (trx) => {
      const version = await kek.versionForWrite(trx);
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
    const retiring = rotating.then(() => kek.retire(ctx, 1));
    setTimeout(release, 200);
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
