/**
 * Issue 9 §3: a missing or different master key is never silently replaced. Each case runs the
 * start-up guard (`prepareStart`, what init, serve and migrate call first) against a real data
 * directory and database, on SQLite and on a fresh PostgreSQL database.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterEach, expect, it } from 'vitest';
import { resolveConfig, type AppConfig } from '../../src/app/config.js';
import { StartRefusedError } from '../../src/app/defaults.js';
import { initialise } from '../../src/app/init.js';
import { prepareStart, type StartMode } from '../../src/app/master-key-guard.js';
import { openServices, openStore } from '../../src/app/services.js';
import { createLocalKekProvider, deriveSecret, keyCheckFingerprint, masterKeyCheck, secureRandom } from '../../src/crypto/index.js';
import { probeVault } from '../../src/secrets/index.js';
import { systemClock } from '../../src/shared/clock.js';
import type { DialectName as Dialect } from '../../src/store/index.js';
import { describeEachDialect, postgresUrl } from '../support/databases.js';

const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A new data directory, and for PostgreSQL a new database, removed after the test. */
async function setup(dialect: Dialect, database?: string): Promise<{ config: AppConfig; dataDir: string; url: string | undefined }> {
  const root = mkdtempSync(join(tmpdir(), 'keysmith-mk-'));
  cleanups.push(async () => rmSync(root, { recursive: true, force: true }));
  const dataDir = join(root, 'data');
  let url = database;
  if (dialect === 'postgres' && url === undefined) {
    const name = `ks_mk_${randomBytes(5).toString('hex')}`;
    const admin = new pg.Client({ connectionString: postgresUrl() });
    await admin.connect();
    await admin.query(`create database ${name}`);
    await admin.end();
    const parsed = new URL(postgresUrl());
    parsed.pathname = `/${name}`;
    url = parsed.toString();
    cleanups.push(async () => {
      const dropper = new pg.Client({ connectionString: postgresUrl() });
      await dropper.connect();
      await dropper.query(`drop database if exists ${name} with (force)`);
      await dropper.end();
    });
  }
  return { config: resolveConfig({ data: dataDir, database: url }, {}), dataDir, url };
}

const prepare = (config: AppConfig, mode: StartMode, env: NodeJS.ProcessEnv = {}) =>
  prepareStart(config, { mode, env, clock: systemClock, random: secureRandom });

async function refusal(promise: Promise<unknown>): Promise<StartRefusedError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(StartRefusedError);
  return error as StartRefusedError;
}

async function checkRows(config: AppConfig): Promise<number> {
  const store = openStore(config);
  try {
    const rows = await store.db.selectFrom('master_key_check').select('check_value').execute();
    return rows.length;
  } finally {
    await store.close();
  }
}

/** Makes the database look as an older Keysmith left it: data, and no check value. */
async function forgetCheckValue(config: AppConfig): Promise<void> {
  const store = openStore(config);
  try {
    await store.db.deleteFrom('master_key_check').execute();
  } finally {
    await store.close();
  }
}

async function putSecret(config: AppConfig, masterKey: Buffer, path: string, value: string): Promise<void> {
  const services = await openServices(config, { masterKey });
  try {
    await services.secrets.put({ actor: 'system:test' }, path, { value });
  } finally {
    await services.close();
  }
}

describeEachDialect('the master key guard', (dialect) => {
  it('makes a master key for a new database and records its check value', async () => {
    const { config, dataDir } = await setup(dialect);
    const prepared = await prepare(config, 'serve');
    expect(prepared.created).toBe(true);
    const key = Buffer.from(readFileSync(join(dataDir, 'master.key'), 'utf8').trim(), 'base64');
    expect(prepared.masterKey?.equals(key)).toBe(true);
    expect(prepared.keyCheck).toMatchObject({ scheme: 'hmac-sha256:v1', check_value: masterKeyCheck(key), origin: 'new' });
    expect(prepared.migrations).toContain('0007-master-key-check');
    // The next start finds the same key and changes nothing.
    const again = await prepare(config, 'serve');
    expect(again).toMatchObject({ created: false, migrations: [], keyCheck: { check_value: masterKeyCheck(key) } });
  });

  it('refuses init, serve and migrate when the master key of a database with data is missing, and writes nothing', async () => {
    const { config, dataDir } = await setup(dialect);
    const init = await initialise(config);
    const keyFile = join(dataDir, 'master.key');
    const key = Buffer.from(readFileSync(keyFile, 'utf8').trim(), 'base64');
    const rootToken = readFileSync(join(dataDir, 'root-token'), 'utf8');
    unlinkSync(keyFile);
    for (const mode of ['serve', 'migrate', 'init'] as const) {
      const error = await refusal(prepare(config, mode));
      expect(error.message).toContain(keyCheckFingerprint(masterKeyCheck(key)));
      expect(error.message).toContain(keyFile);
      expect(error.message).toContain('KEYSMITH_MASTER_KEY');
      expect(error.message).toMatch(/no master key was found/);
    }
    // `keysmith init` as a whole: no new key, no new root token.
    await refusal(initialise(config));
    expect(existsSync(keyFile)).toBe(false);
    expect(readFileSync(join(dataDir, 'root-token'), 'utf8')).toBe(rootToken);
    expect(init.masterKey).toBe(keyCheckFingerprint(masterKeyCheck(key)));
    expect(await checkRows(config)).toBe(1);
  });

  it('refuses another master key, from the file or from KEYSMITH_MASTER_KEY, naming both fingerprints', async () => {
    const { config, dataDir } = await setup(dialect);
    await initialise(config);
    const keyFile = join(dataDir, 'master.key');
    const key = Buffer.from(readFileSync(keyFile, 'utf8').trim(), 'base64');
    const other = randomBytes(32);
    const fromEnv = await refusal(prepare(config, 'serve', { KEYSMITH_MASTER_KEY: other.toString('base64') }));
    expect(fromEnv.message).toContain(keyCheckFingerprint(masterKeyCheck(key)));
    expect(fromEnv.message).toContain(`the master key from KEYSMITH_MASTER_KEY (${keyCheckFingerprint(masterKeyCheck(other))}) is not that key`);
    writeFileSync(keyFile, `${other.toString('base64')}\n`, { mode: 0o600 });
    for (const mode of ['serve', 'migrate', 'init'] as const) {
      const fromFile = await refusal(prepare(config, mode));
      expect(fromFile.message).toContain(`the master key from ${keyFile} (${keyCheckFingerprint(masterKeyCheck(other))})`);
    }
  });

  it('starts with the database key given in KEYSMITH_MASTER_KEY and no key file, and makes none', async () => {
    const { config, dataDir } = await setup(dialect);
    await initialise(config);
    const keyFile = join(dataDir, 'master.key');
    const text = readFileSync(keyFile, 'utf8');
    unlinkSync(keyFile);
    const prepared = await prepare(config, 'serve', { KEYSMITH_MASTER_KEY: text.trim() });
    expect(prepared.created).toBe(false);
    expect(prepared.masterKey?.toString('base64')).toBe(text.trim());
    expect(existsSync(keyFile)).toBe(false);
    expect((await prepare(config, 'migrate', { KEYSMITH_MASTER_KEY: text.trim() })).migrations).toEqual([]);
  });

  it('migrates an empty database without a key and records nothing; the first serve then makes the key', async () => {
    const { config, dataDir } = await setup(dialect);
    const migrated = await prepare(config, 'migrate');
    expect(migrated.masterKey).toBeUndefined();
    expect(migrated.migrations).toContain('0007-master-key-check');
    expect(existsSync(join(dataDir, 'master.key'))).toBe(false);
    expect(await checkRows(config)).toBe(0);
    const served = await prepare(config, 'serve');
    expect(served.created).toBe(true);
    expect(await checkRows(config)).toBe(1);
  });

  it('records the key of an older database (no check value) only when it opens the root token', async () => {
    const { config, dataDir } = await setup(dialect);
    await initialise(config);
    const keyFile = join(dataDir, 'master.key');
    const text = readFileSync(keyFile, 'utf8').trim();
    unlinkSync(keyFile);
    await forgetCheckValue(config);
    await refusal(prepare(config, 'serve'));
    const wrong = await refusal(prepare(config, 'serve', { KEYSMITH_MASTER_KEY: randomBytes(32).toString('base64') }));
    expect(wrong.message).toMatch(/holds data sealed under the master key it was written with/);
    expect(await checkRows(config)).toBe(0);
    const right = await prepare(config, 'serve', { KEYSMITH_MASTER_KEY: text });
    expect(right.keyCheck).toMatchObject({ origin: 'verified', check_value: masterKeyCheck(Buffer.from(text, 'base64')) });
  });

  it('records the key of an older database only when it opens its newest sealed secret', async () => {
    const { config, dataDir } = await setup(dialect);
    const init = await prepare(config, 'init');
    await putSecret(config, init.masterKey!, 'payments/stripe', 'sk_live_example');
    await forgetCheckValue(config);
    const keyFile = join(dataDir, 'master.key');
    const text = readFileSync(keyFile, 'utf8').trim();
    unlinkSync(keyFile);
    // No root token file here: the vault is what tells.
    expect(existsSync(join(dataDir, 'root-token'))).toBe(false);
    await refusal(prepare(config, 'migrate', { KEYSMITH_MASTER_KEY: randomBytes(32).toString('base64') }));
    expect(await checkRows(config)).toBe(0);
    const right = await prepare(config, 'migrate', { KEYSMITH_MASTER_KEY: text });
    expect(right.keyCheck).toMatchObject({ origin: 'verified' });
  });

  it('records the key of an older database with nothing to try it on as unverified', async () => {
    const { config, dataDir } = await setup(dialect);
    await initialise(config);
    unlinkSync(join(dataDir, 'root-token'));
    await forgetCheckValue(config);
    const prepared = await prepare(config, 'serve');
    expect(prepared.keyCheck).toMatchObject({ origin: 'unverified' });
  });

  it('refuses to open the services with another master key, whatever path leads there', async () => {
    const { config } = await setup(dialect);
    const prepared = await prepare(config, 'init');
    const other = randomBytes(32);
    const error = await refusal(openServices(config, { masterKey: other }));
    expect(error.message).toContain(keyCheckFingerprint(masterKeyCheck(other)));
    expect(error.message).toContain(keyCheckFingerprint(masterKeyCheck(prepared.masterKey!)));
    const services = await openServices(config, { masterKey: prepared.masterKey! });
    await services.close();
  });

  it('tells a master key by a kept digest when the KEK does not come from it (as with PKCS#11)', async () => {
    const { config } = await setup(dialect);
    const key = (await prepare(config, 'init')).masterKey!;
    const services = await openServices(config, { masterKey: key });
    try {
      // The token's KEK stands in for an HSM's: it opens values whatever master key is tried.
      const token = createLocalKekProvider(key, secureRandom);
      const probe = (digestFrom: Buffer) =>
        probeVault({ db: services.store.db, kek: token, digestKey: deriveSecret(digestFrom, 'secret-digest:v1'), kekFromMasterKey: false });
      await services.secrets.put({ actor: 'system:test' }, 'app/no-digest', { value: 'v1' });
      // Without a request token no digest is kept: nothing to tell by.
      expect(await probe(randomBytes(32))).toBe('nothing');
      await services.secrets.put({ actor: 'system:test' }, 'app/with-digest', { value: 'v2', requestToken: 'req-1' });
      expect(await probe(randomBytes(32))).toBe('fails');
      expect(await probe(key)).toBe('opens');
      // A token that cannot open the value says nothing about the master key.
      const otherToken = createLocalKekProvider(randomBytes(32), secureRandom);
      expect(await probeVault({ db: services.store.db, kek: otherToken, digestKey: deriveSecret(key, 'secret-digest:v1'), kekFromMasterKey: false })).toBe('nothing');
      expect(await probeVault({ db: services.store.db, kek: otherToken, digestKey: deriveSecret(key, 'secret-digest:v1'), kekFromMasterKey: true })).toBe('fails');
    } finally {
      await services.close();
    }
  });

  if (dialect === 'postgres') {
    it('lets one of two servers starting on one new database with their own data directories win; the other is refused and keeps no key', async () => {
      const first = await setup(dialect);
      const second = await setup(dialect, first.url);
      const results = await Promise.allSettled([prepare(first.config, 'serve'), prepare(second.config, 'serve')]);
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(won).toHaveLength(1);
      expect(lost).toHaveLength(1);
      expect(lost[0]!.reason).toBeInstanceOf(StartRefusedError);
      const keyFiles = [first.dataDir, second.dataDir].filter((dir) => existsSync(join(dir, 'master.key')));
      expect(keyFiles).toHaveLength(1);
    });
  }
});
