/**
 * Two servers on one database: each caches sealed rows for reads, and learns from the audit
 * change feed that the other changed a secret, so a read never answers a stale stage for long.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { createLocalKekProvider, deriveSecret, secureRandom } from '../../src/crypto/index.js';
import { KekService, SecretService } from '../../src/secrets/index.js';
import { ManualClock } from '../../src/shared/clock.js';
import { AppError } from '../../src/shared/errors.js';
import { testAuditLog } from '../support/context.js';
import { createTestStore, describeEachDialect, type TestStore } from '../support/databases.js';

const ctx = { actor: 'key_tester00000000000000000' };

for (const cacheOpenedValues of [false, true]) {
  describeEachDialect(`vault caches across two servers (opened values ${cacheOpenedValues ? 'cached' : 'kept sealed'})`, (dialect) => {
    let testStore: TestStore;
    let a: SecretService;
    let b: SecretService;
    const masterKey = randomBytes(32);
    const clock = new ManualClock('2026-11-01T00:00:00.000Z');

    const server = async () => {
      const kek = new KekService({ db: testStore.store.db, audit: testAuditLog(masterKey), dialect: testStore.store.dialect, clock, kek: createLocalKekProvider(masterKey, secureRandom) });
      await kek.initialise();
      const vault = new SecretService({ db: testStore.store.db, audit: testAuditLog(masterKey), dialect: testStore.store.dialect, clock, random: secureRandom, kek, digestKey: deriveSecret(masterKey, 'secret-digest:v1'), config: { cacheOpenedValues } });
      await vault.changes.poll();
      return vault;
    };

    beforeAll(async () => {
      testStore = await createTestStore(dialect);
      a = await server();
      b = await server();
    });
    afterAll(async () => {
      await testStore.cleanup();
    });

    it('serves the new current version on the other server after one change-feed poll', async () => {
      await a.put(ctx, 'shared/db-password', { value: 'first' });
      expect((await b.read(ctx, 'shared/db-password')).value).toBe('first');
      expect(JSON.parse(await b.readJson(ctx, 'shared/db-password'))).toMatchObject({ value: 'first', version: 1 });
      await a.put(ctx, 'shared/db-password', { value: 'second' });
      await b.changes.poll();
      expect((await b.read(ctx, 'shared/db-password')).value).toBe('second');
      expect(JSON.parse(await b.readJson(ctx, 'shared/db-password'))).toEqual({
        id: expect.stringMatching(/^sec_/),
        path: 'shared/db-password',
        version: 2,
        stages: ['current'],
        value: 'second',
        createdAt: '2026-11-01T00:00:00.000Z',
      });
      await a.rollback(ctx, 'shared/db-password');
      await b.changes.poll();
      expect(await b.read(ctx, 'shared/db-password')).toMatchObject({ value: 'first', version: 1, stages: ['current'] });
    });

    it('stops serving a secret the other server deleted', async () => {
      await a.put(ctx, 'shared/api-key', { value: 'k1' });
      expect((await b.read(ctx, 'shared/api-key')).value).toBe('k1');
      await a.delete(ctx, 'shared/api-key');
      await b.changes.poll();
      const error = await b.read(ctx, 'shared/api-key').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(AppError);
      expect((error as AppError).code).toBe('ERR_SECRET_SCHEDULED_FOR_DELETION');
    });
  });
}
