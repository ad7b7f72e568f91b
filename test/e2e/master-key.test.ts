/**
 * Issue 9 §3 and §4 through the built CLI: a server never replaces a missing or different master
 * key, a second server on one PostgreSQL needs the first one's key, and the data directory and
 * database are private (0700/0600) or refused.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresUrl } from '../support/databases.js';
import { ensureBuilt, makeTempDir, removeTempDirs, runCli, startServer, stopAll } from './support.js';

const drops: Array<() => Promise<void>> = [];
let umask: number;

beforeAll(() => {
  ensureBuilt();
  // The servers spawned here inherit this: the usual umask, under which files were 0644 before.
  umask = process.umask(0o022);
});

afterAll(async () => {
  await stopAll();
  for (const drop of drops) await drop();
  removeTempDirs();
  process.umask(umask);
});

async function freshDatabase(): Promise<string> {
  const name = `ks_e2e_mk_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: postgresUrl() });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  drops.push(async () => {
    const dropper = new pg.Client({ connectionString: postgresUrl() });
    await dropper.connect();
    await dropper.query(`drop database if exists ${name} with (force)`);
    await dropper.end();
  });
  const url = new URL(postgresUrl());
  url.pathname = `/${name}`;
  return url.toString();
}

/** `keysmith serve` expected to refuse: bounded, so a server that wrongly listens is killed and fails the test. */
function refusedServe(dataDir: string, args: readonly string[], env: Record<string, string> = {}) {
  return runCli(['serve', '--data', dataDir, '--addr', '127.0.0.1:0', '--log-level', 'silent', ...args], { env, timeoutMs: 15_000 });
}

const mode = (path: string) => (statSync(path).mode & 0o777).toString(8);

describe.each(['sqlite', 'postgres'] as const)('a missing or different master key [%s]', { timeout: 120_000 }, (dialect) => {
  it('is refused by serve and migrate, which write nothing; the right key in KEYSMITH_MASTER_KEY starts the server', async () => {
    const dataDir = join(makeTempDir('mk'), 'data');
    const args = dialect === 'postgres' ? ['--database', await freshDatabase()] : [];
    const first = await startServer(dataDir, args);
    const created = (await first.cli(['keys', 'create', '--owner', 'team-mk', '--json'])).json();
    expect((await first.cli(['secrets', 'put', 'payments/stripe'], { input: 'sk_example_value' })).code).toBe(0);
    await first.stop();

    const keyFile = join(dataDir, 'master.key');
    const keyText = readFileSync(keyFile, 'utf8').trim();
    const rootToken = readFileSync(join(dataDir, 'root-token'), 'utf8');
    unlinkSync(keyFile);

    const serve = await refusedServe(dataDir, args);
    expect(serve.signal).toBeNull();
    expect(serve.code).toBe(1);
    expect(serve.stderr).toMatch(/refusing to start: .* holds data sealed under master key kcv:[0-9a-f]{16}, and no master key was found/);
    expect(serve.stderr).toContain(keyFile);
    expect(serve.stderr).toContain('KEYSMITH_MASTER_KEY');
    expect(serve.stderr).not.toMatch(/listening/);
    const migrate = await runCli(['migrate', '--data', dataDir, ...args]);
    expect(migrate.code).toBe(1);
    expect(migrate.stderr).toMatch(/no master key was found/);
    const init = await runCli(['init', '--data', dataDir, ...args]);
    expect(init.code).toBe(1);
    expect(init.stdout).not.toMatch(/Root token/);
    expect(existsSync(keyFile)).toBe(false);
    expect(readFileSync(join(dataDir, 'root-token'), 'utf8')).toBe(rootToken);

    const other = await refusedServe(dataDir, args, { KEYSMITH_MASTER_KEY: randomBytes(32).toString('base64') });
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/the master key from KEYSMITH_MASTER_KEY \(kcv:[0-9a-f]{16}\) is not that key/);

    const again = await startServer(dataDir, args, { KEYSMITH_MASTER_KEY: keyText });
    expect((await again.cli(['keys', 'verify', created.key, '--json'])).json()).toMatchObject({ valid: true, keyId: created.id });
    const secret = await again.cli(['secrets', 'get', 'payments/stripe', '--json']);
    expect(secret.code, secret.stderr).toBe(0);
    expect(secret.json()).toMatchObject({ value: 'sk_example_value' });
    expect(existsSync(keyFile)).toBe(false);
    await again.stop();
  });
});

describe('two servers on one PostgreSQL database, each with its own data directory', { timeout: 120_000 }, () => {
  it('refuses the second without the key, and with it both read what the other wrote', async () => {
    const url = await freshDatabase();
    const firstDir = join(makeTempDir('mk-a'), 'data');
    const first = await startServer(firstDir, ['--database', url]);
    expect((await first.cli(['secrets', 'put', 'shared/db-password'], { input: 'from-first' })).code).toBe(0);

    const secondDir = join(makeTempDir('mk-b'), 'data');
    const refused = await refusedServe(secondDir, ['--database', url]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/no master key was found/);
    expect(existsSync(join(secondDir, 'master.key'))).toBe(false);
    expect(existsSync(join(secondDir, 'root-token'))).toBe(false);

    // The operator gives the second server the same key (and, for this test's CLI, the root token).
    const keyText = readFileSync(join(firstDir, 'master.key'), 'utf8').trim();
    writeFileSync(join(secondDir, 'root-token'), readFileSync(join(firstDir, 'root-token')), { mode: 0o600 });
    const second = await startServer(secondDir, ['--database', url], { KEYSMITH_MASTER_KEY: keyText });
    const read = await second.cli(['secrets', 'get', 'shared/db-password', '--json']);
    expect(read.code, read.stderr).toBe(0);
    expect(read.json()).toMatchObject({ value: 'from-first' });
    expect((await second.cli(['secrets', 'put', 'shared/api-key'], { input: 'from-second' })).code).toBe(0);
    expect((await first.cli(['secrets', 'get', 'shared/api-key', '--json'])).json()).toMatchObject({ value: 'from-second' });
    expect(existsSync(join(secondDir, 'master.key'))).toBe(false);
    await Promise.all([first.stop(), second.stop()]);
  });
});

describe('data directory and database modes', { timeout: 120_000 }, () => {
  it('creates the data directory 0700 and the database, its WAL and shared memory 0600 under umask 022', async () => {
    const dataDir = join(makeTempDir('modes'), 'data');
    const server = await startServer(dataDir);
    expect((await server.cli(['keys', 'create', '--owner', 'team-modes'])).code).toBe(0);
    expect(mode(dataDir)).toBe('700');
    for (const file of ['keysmith.db', 'keysmith.db-wal', 'keysmith.db-shm', 'master.key', 'root-token']) {
      expect([file, mode(join(dataDir, file))]).toEqual([file, '600']);
    }
    await server.stop();
  });

  it('refuses an existing data directory that others can read, with the chmod to fix it', async () => {
    const dataDir = join(makeTempDir('open-dir'), 'data');
    mkdirSync(dataDir, { mode: 0o755 });
    chmodSync(dataDir, 0o755);
    const serve = await refusedServe(dataDir, []);
    expect(serve.code).toBe(1);
    expect(serve.stderr).toContain(`data directory ${dataDir} is open to group or others (mode 0755)`);
    expect(serve.stderr).toContain(`chmod 700 ${dataDir}`);
    expect(existsSync(join(dataDir, 'master.key'))).toBe(false);
    expect(existsSync(join(dataDir, 'keysmith.db'))).toBe(false);
    const init = await runCli(['init', '--data', dataDir]);
    expect(init.code).toBe(1);
    expect(init.stderr).toContain(`chmod 700 ${dataDir}`);
  });

  it('refuses a database file that others can read, with the chmod to fix it, and starts once fixed', async () => {
    const dataDir = join(makeTempDir('open-db'), 'data');
    expect((await runCli(['init', '--data', dataDir])).code).toBe(0);
    const db = join(dataDir, 'keysmith.db');
    chmodSync(db, 0o644);
    const serve = await refusedServe(dataDir, []);
    expect(serve.code).toBe(1);
    expect(serve.stderr).toContain(`${db} 0644`);
    expect(serve.stderr).toContain(`chmod 600 ${db}`);
    const migrate = await runCli(['migrate', '--data', dataDir]);
    expect(migrate.code).toBe(1);
    chmodSync(db, 0o600);
    const server = await startServer(dataDir);
    await server.stop();
  });
});
