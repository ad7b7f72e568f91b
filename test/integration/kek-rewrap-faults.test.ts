/**
 * The re-wrap job when something fails on the Nth data key: the KEK provider (a wrapper around
 * the real local provider that throws on its Nth call) or the database (a real trigger that
 * aborts the UPDATE of the Nth row). The batch holding that row is left exactly as it was,
 * batches before it stay committed, the old version cannot be retired meanwhile, the next run
 * finishes the job, and retire then works.
 */
import { afterEach, beforeEach, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { createLocalKekProvider, deriveSecret, secureRandom } from '../../src/crypto/index.js';
import { KekService, SecretService } from '../../src/secrets/index.js';
import { ManualClock } from '../../src/shared/clock.js';
import { testAuditLog } from '../support/context.js';
import { createTestStore, describeEachDialect, type TestStore } from '../support/databases.js';
import { INJECTED_FAULT, failUpdatesOf, literal } from '../support/db-faults.js';
import { faultyKekProvider, type FaultyKekProvider } from '../support/faulty-kek.js';

const ctx = { actor: 'key_kekfaults000000000000000' };
const SECRETS = 10;
const VERSIONS = 3;
const BATCH = 10;
/** The Nth data key in the job's order (1-based): the 5th row of the second batch. */
const NTH = 15;

describeEachDialect('re-wrap when the Nth data key fails', (dialect) => {
  let testStore: TestStore;
  let provider: FaultyKekProvider;
  let kek: KekService;
  let vault: SecretService;
  const masterKey = randomBytes(32);
  const audit = testAuditLog(masterKey);
  const clock = new ManualClock('2026-11-01T00:00:00.000Z');

  beforeEach(async () => {
    testStore = await createTestStore(dialect);
    provider = faultyKekProvider(createLocalKekProvider(masterKey, secureRandom));
    kek = new KekService({ db: testStore.store.db, audit, dialect: testStore.store.dialect, clock, kek: provider, rewrapBatch: BATCH, rewrapCheckMs: 3_600_000 });
    await kek.initialise();
    vault = new SecretService({ db: testStore.store.db, audit, dialect: testStore.store.dialect, clock, random: secureRandom, kek, digestKey: deriveSecret(masterKey, 'secret-digest:v1') });
    for (let s = 0; s < SECRETS; s++) {
      for (let v = 1; v <= VERSIONS; v++) await vault.put(ctx, `faults/s-${s}`, { value: `value-${s}-${v}` });
    }
  });
  afterEach(async () => {
    await kek.stop();
    await testStore.cleanup();
  });

  /**
   * Rotates with the job held, then starts it and resolves with that run: `kick()` right after `start()` is that very run,
   * so the test observes the run the fault hits (rotate's own background run could otherwise
   * fail unobserved before the test asks, and a second run would find the fault spent).
   */
  async function rotateAndRun(): Promise<void> {
    await kek.stop();
    await kek.rotate(ctx);
    kek.start();
    return kek.kick();
  }

  /** Every data key in the job's order, with what a re-wrap would change. */
  const rows = () =>
    testStore.store.db
      .selectFrom('secret_versions')
      .select(['secret_id', 'version', 'kek_version', 'wrapped_key', 'sealed'])
      .orderBy('secret_id')
      .orderBy('version')
      .execute();

  const rewrapEvents = async () =>
    (await testStore.store.db.selectFrom('audit_events').select(['action', 'data']).where('action', '=', 'kek.rewrapped').orderBy('seq').execute()).map(
      (row) => JSON.parse(row.data) as { dataKeys: number },
    );

  /** The run that failed moved the first batch only; the failing batch and the rest are byte for byte as they were. */
  async function expectCutAfterFirstBatch(before: Awaited<ReturnType<typeof rows>>): Promise<void> {
    const now = await rows();
    expect(now.map((r) => `${r.secret_id}/${r.version}`)).toEqual(before.map((r) => `${r.secret_id}/${r.version}`));
    expect(now.slice(0, BATCH).every((r) => Number(r.kek_version) === 2)).toBe(true);
    expect(now.slice(BATCH)).toEqual(before.slice(BATCH));
    expect(now.map((r) => r.sealed)).toEqual(before.map((r) => r.sealed));
    const status = await kek.status();
    expect(status.rewrap).toMatchObject({ running: false, toVersion: 2, remaining: SECRETS * VERSIONS - BATCH });
    expect(await rewrapEvents()).toEqual([expect.objectContaining({ toVersion: 2, dataKeys: BATCH })]);
    await expect(kek.retire(ctx, 1)).rejects.toMatchObject({ code: 'ERR_KEK_VERSION_IN_USE' });
    // Values under either version still read while the job is cut short.
    vault.clearCache();
    for (let s = 0; s < SECRETS; s++) expect((await vault.read(ctx, `faults/s-${s}`, { version: 1 })).value).toBe(`value-${s}-1`);
  }

  /** The next run finishes: every key under version 2, values unchanged, retire works, the chain holds. */
  async function expectNextRunFinishes(before: Awaited<ReturnType<typeof rows>>): Promise<void> {
    await kek.kick();
    const now = await rows();
    expect(now.every((r) => Number(r.kek_version) === 2)).toBe(true);
    expect(now.map((r) => r.sealed)).toEqual(before.map((r) => r.sealed));
    expect((await rewrapEvents()).reduce((sum, e) => sum + e.dataKeys, 0)).toBe(SECRETS * VERSIONS);
    vault.clearCache();
    for (let s = 0; s < SECRETS; s++) {
      for (let v = 1; v <= VERSIONS; v++) expect((await vault.read(ctx, `faults/s-${s}`, { version: v })).value).toBe(`value-${s}-${v}`);
    }
    const retired = await kek.retire(ctx, 1);
    expect(retired.versions.map((v) => [v.version, v.state, v.dataKeys])).toEqual([
      [1, 'retired', 0],
      [2, 'active', SECRETS * VERSIONS],
    ]);
    expect(await audit.verify(testStore.store.db)).toMatchObject({ ok: true });
  }

  for (const method of ['unwrapKey', 'wrapKey'] as const) {
    it(`the provider failing on the Nth ${method}: that batch unchanged, the next run finishes, retire works`, async () => {
      const before = await rows();
      expect(before).toHaveLength(SECRETS * VERSIONS);
      // The job rewraps each row with one unwrap and one wrap, in key order: the Nth call is the Nth row.
      provider.failOn(method, NTH);
      await expect(rotateAndRun()).rejects.toMatchObject({ code: 'ERR_KEK_UNAVAILABLE' });
      await expectCutAfterFirstBatch(before);
      await expectNextRunFinishes(before);
    });
  }

  it('the database failing on the Nth row: that batch rolls back whole, the next run finishes, retire works', async () => {
    const before = await rows();
    const nth = before[NTH - 1]!;
    // A real failure inside the batch's transaction, after four rows of it were updated.
    const fault = await failUpdatesOf(
      testStore.store.db,
      dialect,
      'secret_versions',
      `OLD.secret_id = ${literal(nth.secret_id)} AND OLD.version = ${Number(nth.version)} AND NEW.kek_version <> OLD.kek_version`,
      'fail_nth_rewrap',
    );
    await expect(rotateAndRun()).rejects.toThrow(INJECTED_FAULT);
    await expectCutAfterFirstBatch(before);
    // While the fault lasts, every run stops at the same batch and changes nothing more.
    await expect(kek.kick()).rejects.toThrow(INJECTED_FAULT);
    await expectCutAfterFirstBatch(before);
    await fault.remove();
    await expectNextRunFinishes(before);
  });
});
