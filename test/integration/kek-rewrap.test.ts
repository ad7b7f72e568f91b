/**
 * Rotating the key-encryption key over 10,000 secret versions while other work reads and writes:
 * no operation fails, every data key ends under the new version without its sealed value
 * changing, every value still reads back, and the old version can be retired only once the
 * re-wrap is done.
 */
import { expect, it } from 'vitest';
import type { ActorContext } from '../../src/audit/index.js';
import { isAppError } from '../../src/shared/errors.js';
import { describeEachDialect } from '../support/databases.js';
import { auditAfter, auditHead, seededRandom, useContext } from '../http/helpers.js';

const SECRETS = 100;
const VERSIONS_EACH = 100;
const WORKERS = 4;
const operator: ActorContext = { actor: 'prn_kek_operator', requestId: 'req_kek' };

describeEachDialect('KEK rotation over 10,000 versions', (dialect) => {
  const ctx = useContext(dialect);

  it(
    'rewraps every data key while readers and writers keep working, then retires the old version',
    async () => {
      const { secrets, kek, store } = ctx();
      const paths = Array.from({ length: SECRETS }, (_, i) => `rewrap/svc-${String(i).padStart(3, '0')}/key`);
      /** Expected value of every version: path → version → value. */
      const expected = new Map<string, Map<number, string>>(paths.map((path) => [path, new Map()]));
      const valueFor = (path: string, version: number) => `value:${path}:v${version}:${(version * 7919) % 10007}`;

      // Seed: 100 rounds, each one version on every secret in parallel (different rows, so no lock waits).
      const seedStart = performance.now();
      for (let version = 1; version <= VERSIONS_EACH; version++) {
        await Promise.all(
          paths.map(async (path) => {
            const made = await secrets.put(operator, path, { value: valueFor(path, version), ...(version === 1 ? { maxVersions: VERSIONS_EACH } : {}) });
            expected.get(path)!.set(made.version, valueFor(path, made.version));
          }),
        );
      }
      const seedMs = performance.now() - seedStart;
      const before = await kek.status();
      expect(before.currentVersion).toBe(1);
      expect(before.rewrap.total).toBe(SECRETS * VERSIONS_EACH);
      const sealedBefore = new Map(
        (await store.db.selectFrom('secret_versions').select(['secret_id', 'version', 'sealed']).execute()).map((r) => [`${r.secret_id}:${r.version}`, r.sealed]),
      );
      expect(sealedBefore.size).toBe(10_000);

      const head = await auditHead(ctx());
      const rewrapStart = performance.now();
      const rotated = await kek.rotate(operator);
      expect(rotated.currentVersion).toBe(2);
      // The re-wrap has just started: version 1 still wraps data keys, and 2 is current.
      const early = await Promise.allSettled([kek.retire(operator, 1), kek.retire(operator, 2)]);
      expect(early.map((r) => (r.status === 'rejected' && isAppError(r.reason) ? r.reason.code : r.status))).toEqual(['ERR_KEK_VERSION_IN_USE', 'ERR_KEK_VERSION_CURRENT']);

      // Meanwhile: workers read random secrets (current and older versions) and put new versions.
      const failures: string[] = [];
      let opsDuringRewrap = 0;
      let rewrapDone = false;
      let stop = false;
      const worker = async (w: number) => {
        const random = seededRandom(1000 + w);
        const mine = paths.filter((_, i) => i % WORKERS === w);
        let ops = 0;
        while (!stop) {
          const path = mine[Math.floor(random() * mine.length)]!;
          const versions = expected.get(path)!;
          const latest = Math.max(...versions.keys());
          try {
            const current = await secrets.read({ actor: `prn_reader_${w}` }, path);
            if (current.version !== latest || current.value !== versions.get(latest)) failures.push(`read ${path}: got v${current.version}`);
            const older = latest - 1 - Math.floor(random() * 50);
            const old = await secrets.read({ actor: `prn_reader_${w}` }, path, { version: older });
            if (old.value !== versions.get(older)) failures.push(`read ${path} v${older}: wrong value`);
            if (ops % 3 === 0) {
              const made = await secrets.put({ actor: `prn_writer_${w}` }, path, { value: valueFor(path, latest + 1), cas: latest });
              if (made.version !== latest + 1) failures.push(`put ${path}: made v${made.version}`);
              versions.set(made.version, valueFor(path, made.version));
            }
          } catch (error) {
            failures.push(`${path}: ${isAppError(error) ? error.code : String(error)}`);
          }
          ops += 1;
          if (!rewrapDone) opsDuringRewrap += 1;
          // Requests arrive as I/O events; a loop of bare awaits would starve the job's turns.
          await new Promise((resolve) => setImmediate(resolve));
        }
      };
      const workers = Array.from({ length: WORKERS }, (_, w) => worker(w));
      await kek.kick();
      rewrapDone = true;
      const rewrapMs = performance.now() - rewrapStart;
      stop = true;
      await Promise.all(workers);

      expect(failures).toEqual([]);
      expect(opsDuringRewrap).toBeGreaterThan(0);

      const after = await kek.status();
      expect(after.rewrap).toMatchObject({ running: false, toVersion: 2, remaining: 0 });
      expect(after.versions.map((v) => [v.version, v.dataKeys])).toEqual([
        [1, 0],
        [2, after.rewrap.total],
      ]);
      const rows = await store.db.selectFrom('secret_versions').select(['secret_id', 'version', 'sealed', 'kek_version']).execute();
      expect(rows.filter((r) => r.kek_version !== 2)).toEqual([]);
      // Re-wrapping moved data keys only: every sealed value left is byte for byte what it was.
      let compared = 0;
      for (const row of rows) {
        const was = sealedBefore.get(`${row.secret_id}:${row.version}`);
        if (was === undefined) continue;
        expect(row.sealed).toBe(was);
        compared += 1;
      }
      expect(compared).toBeGreaterThan(5_000);

      // Every version still there reads back, through fresh rows.
      secrets.clearCache();
      let reads = 0;
      await Promise.all(
        paths.map(async (path) => {
          const { versions } = await secrets.versions(path);
          expect(versions.length).toBeGreaterThanOrEqual(Math.min(VERSIONS_EACH, expected.get(path)!.size));
          for (const { version } of versions) {
            const read = await secrets.read(operator, path, { version });
            expect(read.value).toBe(expected.get(path)!.get(version));
            reads += 1;
          }
        }),
      );
      expect(reads).toBe(rows.length);

      const retired = await kek.retire(operator, 1);
      expect(retired.versions[0]).toMatchObject({ version: 1, state: 'retired' });
      const events = await auditAfter(ctx(), head);
      const kekEvents = events.filter((e) => e.action.startsWith('kek.'));
      expect(kekEvents[0]!.action).toBe('kek.rotated');
      expect(kekEvents.at(-1)!.action).toBe('kek.retired');
      const rewrapped = kekEvents.filter((e) => e.action === 'kek.rewrapped').reduce((sum, e) => sum + Number(e.data.dataKeys), 0);
      // Concurrent puts pruned some old versions before the job reached them.
      expect(rewrapped).toBeGreaterThanOrEqual(compared);
      expect(rewrapped).toBeLessThanOrEqual(10_000);

      console.info(`[${dialect}] seeded 10,000 versions in ${Math.round(seedMs)} ms; rotate + re-wrap ${Math.round(rewrapMs)} ms with ${opsDuringRewrap} concurrent operations`);
    },
    180_000,
  );
});

describeEachDialect('KEK rotation with a data key that cannot be unwrapped', (dialect) => {
  const ctx = useContext(dialect);

  it('moves every other data key, keeps the server up, and refuses to retire the version the bad one needs', async () => {
    const { secrets, kek, store } = ctx();
    const made = [];
    for (let i = 0; i < 30; i++) made.push(await secrets.put(operator, `corrupt/s${i}`, { value: `corrupt-test-${i}` }));
    // Row 0 gets row 1's wrapped key: bound to another row, it cannot be unwrapped.
    const donor = await store.db.selectFrom('secret_versions').select('wrapped_key').where('secret_id', '=', made[1]!.id).executeTakeFirstOrThrow();
    await store.db.updateTable('secret_versions').set({ wrapped_key: donor.wrapped_key }).where('secret_id', '=', made[0]!.id).execute();

    // As the HTTP route does: rotate, and let the re-wrap run in the background unobserved.
    const res = await ctx().request({ method: 'POST', url: '/v1/kek/rotate' });
    expect(res.statusCode, res.body).toBe(201);
    for (let i = 0; i < 200 && (await kek.status()).rewrap.running; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    await kek.kick();

    const status = await kek.status();
    expect(status.rewrap).toMatchObject({ running: false, remaining: 1 });
    expect(status.versions.map((v) => [v.version, v.dataKeys])).toEqual([
      [1, 1],
      [2, 29],
    ]);
    await expect(kek.retire(operator, 1)).rejects.toMatchObject({ code: 'ERR_KEK_VERSION_IN_USE' });
    secrets.clearCache();
    await expect(secrets.read(operator, 'corrupt/s0')).rejects.toMatchObject({ code: 'ERR_DECRYPTION_FAILED' });
    for (let i = 1; i < 30; i++) expect((await secrets.read(operator, `corrupt/s${i}`)).value).toBe(`corrupt-test-${i}`);
    // The server still answers.
    expect((await ctx().request({ method: 'GET', url: '/v1/kek' })).statusCode).toBe(200);
  });
});
