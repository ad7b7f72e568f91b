/**
 * The re-wrap job keeps its state in the data (rows still under an older KEK version), so a
 * job cut short by a stop is finished by the next one to start. (A `kill -9` inside a batch:
 * test/e2e/kek-crash.test.ts; a provider or database failing mid-batch: kek-rewrap-faults.)
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { createLocalKekProvider, deriveSecret, secureRandom } from '../../src/crypto/index.js';
import { KekService, SecretService } from '../../src/secrets/index.js';
import { ManualClock } from '../../src/shared/clock.js';
import { testAuditLog } from '../support/context.js';
import { createTestStore, describeEachDialect, type TestStore } from '../support/databases.js';
import { faultyKekProvider } from '../support/faulty-kek.js';

const ctx = { actor: 'key_tester00000000000000000' };
const SECRETS = 60;
const VERSIONS = 5;

describeEachDialect('re-wrap resumes after a stop', (dialect) => {
  let testStore: TestStore;
  const masterKey = randomBytes(32);
  const clock = new ManualClock('2026-11-01T00:00:00.000Z');
  const BATCH = 50;
  const provider = faultyKekProvider(createLocalKekProvider(masterKey, secureRandom));
  const kekOn = () => new KekService({ db: testStore.store.db, audit: testAuditLog(masterKey), dialect: testStore.store.dialect, clock, kek: provider, rewrapBatch: BATCH });
  const secretsOn = (kek: KekService) =>
    new SecretService({ db: testStore.store.db, audit: testAuditLog(masterKey), dialect: testStore.store.dialect, clock, random: secureRandom, kek, digestKey: deriveSecret(masterKey, 'secret-digest:v1') });

  beforeAll(async () => {
    testStore = await createTestStore(dialect);
  });
  afterAll(async () => {
    await testStore.cleanup();
  });

  it('leaves data keys behind when stopped mid-job, and a fresh service finishes them', async () => {
    const first = kekOn();
    await first.initialise();
    const vault = secretsOn(first);
    for (let s = 0; s < SECRETS; s++) {
      for (let v = 1; v <= VERSIONS; v++) await vault.put(ctx, `resume/s-${s}`, { value: `value-${s}-${v}` });
    }
    const sealedBefore = await testStore.store.db.selectFrom('secret_versions').select(['secret_id', 'version', 'sealed']).execute();

    // The job is held in its second batch (first row's unwrap) and stopped there: the batch in
    // flight finishes, and no more.
    const held = provider.holdOn('unwrapKey', BATCH + 1);
    await first.rotate(ctx);
    await held.reached;
    const stopping = first.stop();
    held.release();
    await stopping;
    const cut = await first.status();
    expect(cut.currentVersion).toBe(2);
    expect(cut.rewrap.remaining).toBe(SECRETS * VERSIONS - 2 * BATCH);

    // "After a restart": a new service over the same database, as a new process would build.
    const second = kekOn();
    await second.initialise();
    await second.kick();
    const done = await second.status();
    expect(done.rewrap.remaining).toBe(0);
    expect(done.versions.map((v) => [v.version, v.dataKeys])).toEqual([
      [1, 0],
      [2, SECRETS * VERSIONS],
    ]);
    const sealedAfter = await testStore.store.db.selectFrom('secret_versions').select(['secret_id', 'version', 'sealed']).execute();
    const byRow = (rows: typeof sealedBefore) => new Map(rows.map((r) => [`${r.secret_id}/${r.version}`, r.sealed]));
    expect(byRow(sealedAfter)).toEqual(byRow(sealedBefore));

    const reader = secretsOn(second);
    for (let s = 0; s < SECRETS; s += 7) {
      for (let v = 1; v <= VERSIONS; v++) expect((await reader.read(ctx, `resume/s-${s}`, { version: v })).value).toBe(`value-${s}-${v}`);
    }
    await second.retire(ctx, 1);
    expect((await second.status()).versions[0]).toMatchObject({ version: 1, state: 'retired' });
  });
});
