/**
 * The server configuration file through the built CLI: `keysmith config check` prints the
 * effective configuration without secrets and exits 2 with FILE:LINE:COL on a bad file, and
 * `keysmith serve --config FILE` runs with the file's egress allowlist and program registry.
 */
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../../src/outbound/index.js';
import { ensureBuilt, makeTempDir, removeTempDirs, runCli, startServer, stopAll } from './support.js';

const PIN = 'pin-9f8e7d6c5b4a';
const HOOK_TOKEN = 'hook-token-5e4d3c2b1a';
const DB_PASSWORD = 'db-pass-0a1b2c3d';
let dir: string;
let program: string;

beforeAll(() => {
  ensureBuilt();
  dir = makeTempDir('config');
  program = join(dir, 'refresh.sh');
  writeFileSync(program, '#!/bin/sh\nexit 0\n');
  chmodSync(program, 0o700);
});

afterAll(async () => {
  await stopAll();
  removeTempDirs();
});

function configFile(name: string, body: string, mode = 0o600): string {
  const path = join(dir, name);
  writeFileSync(path, body, { mode });
  chmodSync(path, mode);
  return path;
}

describe('keysmith config check', { timeout: 60_000 }, () => {
  it('prints the effective configuration, masking the PIN, the database password and the checkpoint URL', async () => {
    const file = configFile(
      'full.yaml',
      [
        `database: postgres://keysmith:${DB_PASSWORD}@db.internal:5432/keysmith`,
        'keys: { maxTtl: 30d }',
        'kek:',
        '  provider: pkcs11',
        `  pkcs11: { token: prod, pin: ${PIN} }`,
        'audit:',
        `  checkpointUrl: https://collector.example/hooks/${HOOK_TOKEN}`,
        '  checkpointCommand: [/usr/local/bin/ship-checkpoint, --to, evidence]',
        'programs:',
        '  refresh:',
        `    path: ${program}`,
        `    sha256: ${sha256Hex(readFileSync(program))}`,
        'egress:',
        '  allow: [api.acme.com:443]',
      ].join('\n'),
    );
    const checked = await runCli(['config', 'check', '--config', file, '--json'], { env: { KEYSMITH_DEFAULT_TTL: '7d' } });
    expect(checked.code, checked.stderr).toBe(0);
    expect(checked.stdout).not.toContain(PIN);
    expect(checked.stdout).not.toContain(DB_PASSWORD);
    expect(checked.stdout).not.toContain(HOOK_TOKEN);
    const data = checked.json();
    expect(data.file).toBe(file);
    const setting = (key: string) => data.settings.find((s: { key: string }) => s.key === key);
    expect(setting('kek.pkcs11.pin')).toEqual({ key: 'kek.pkcs11.pin', env: 'KEYSMITH_PKCS11_PIN', value: '[set]', source: 'file' });
    expect(setting('database').value).toBe('postgres://keysmith:***@db.internal:5432/keysmith');
    expect(setting('audit.checkpointUrl')).toEqual({ key: 'audit.checkpointUrl', env: 'KEYSMITH_AUDIT_CHECKPOINT_URL', value: '[set]', source: 'file' });
    expect(setting('audit.checkpointCommand')).toMatchObject({ value: '["/usr/local/bin/ship-checkpoint","--to","evidence"]', source: 'file' });
    expect(setting('audit.checkpointInterval')).toMatchObject({ value: '1m', source: 'default' });
    expect(setting('keys.maxTtl')).toMatchObject({ value: '30d', source: 'file' });
    expect(setting('keys.defaultTtl')).toMatchObject({ value: '7d', source: 'env' });
    expect(setting('listen')).toMatchObject({ value: '127.0.0.1:7370', source: 'default' });
    expect(data.settings.some((s: { env: string }) => s.env === 'KEYSMITH_MASTER_KEY')).toBe(false);
    expect(data.programs).toEqual([{ name: 'refresh', path: program, sha256: sha256Hex(readFileSync(program)), args: [], allowArgs: [] }]);
    expect(data.egress).toEqual({ allow: ['api.acme.com:443'] });

    const text = await runCli(['config', 'check', '--config', file]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(`Configuration file: ${file}`);
    expect(text.stdout).toMatch(/kek\.pkcs11\.pin\s+\[set\]\s+file/);
    expect(text.stdout + text.stderr).not.toContain(PIN);
    expect(text.stdout + text.stderr).not.toContain(HOOK_TOKEN);
  });

  it('masks a database password given as a query parameter too', async () => {
    const url = `postgres://keysmith@db.internal:5432/keysmith?sslmode=require&password=${DB_PASSWORD}&sslpassword=${PIN}`;
    const checked = await runCli(['config', 'check', '--config', configFile('query.yaml', 'egress: { allow: [] }'), '--json'], { env: { KEYSMITH_DATABASE_URL: url } });
    expect(checked.code, checked.stderr).toBe(0);
    expect(checked.stdout).not.toContain(DB_PASSWORD);
    expect(checked.stdout).not.toContain(PIN);
    const database = checked.json().settings.find((s: { key: string }) => s.key === 'database');
    expect(database).toMatchObject({ value: 'postgres://keysmith@db.internal:5432/keysmith?sslmode=require&password=***&sslpassword=***', source: 'env' });
  });

  it('exits 2 naming FILE:LINE:COL for every problem', async () => {
    const file = configFile('bad.yaml', ['listen: 127.0.0.1:7370', 'keys:', '  maxTtl: forever', 'colour: blue', 'egress:', '  allow: ["169.254.169.254"]'].join('\n'));
    const checked = await runCli(['config', 'check', '--config', file]);
    expect(checked.code).toBe(2);
    expect(checked.stderr).toContain(`${file}:3:11: keys.maxTtl must be a duration`);
    expect(checked.stderr).toContain(`${file}:4:1: unknown setting "colour"`);
    expect(checked.stderr).toContain(`${file}:6:11: egress.allow: "169.254.169.254" must be host:port`);
    const json = await runCli(['config', 'check', '--config', file, '--json']);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stderr).error.problems).toHaveLength(3);
  });

  it('refuses a file others can read or write', async () => {
    const file = configFile('open.yaml', 'listen: 7370\n', 0o644);
    const checked = await runCli(['config', 'check', '--config', file]);
    expect(checked.code).toBe(2);
    expect(checked.stderr).toContain(`mode 0644); run "chmod 600 ${file}"`);
  });
});

describe('keysmith init and migrate with a configuration file', { timeout: 60_000 }, () => {
  it('init takes the data directory from --config; migrate refuses a bad file with exit 2', async () => {
    const dataDir = join(makeTempDir('init-config'), 'data');
    const file = configFile('init.yaml', `data: ${dataDir}\n`);
    const init = await runCli(['init', '--config', file, '--json']);
    expect(init.code, init.stderr).toBe(0);
    expect(init.json()).toMatchObject({ dataDir, created: true });
    const migrated = await runCli(['migrate', '--json'], { env: { KEYSMITH_CONFIG: file } });
    expect(migrated.code, migrated.stderr).toBe(0);
    const bad = configFile('migrate-bad.yaml', `data: ${dataDir}\nkeys: { maxTtl: 30 }\n`);
    const refused = await runCli(['migrate', '--config', bad]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`${bad}:2:17: keys.maxTtl must be a duration`);
  });
});

describe('keysmith serve with a configuration file', { timeout: 90_000 }, () => {
  const policy = (name: string, url: string) => ({
    policy: { name, target: { secret: `apps/${name}` }, schedule: { every: '30d' }, overlap: '1h', connector: { type: 'http', settings: {
      create: { url: `${url}/keys`, key: '$.secret' }, test: { url: `${url}/me` }, revoke: { url: `${url}/keys/{{vendorId}}` },
    } } },
  });

  it('takes its egress allowlist and programs from --config, and refuses what the file does not list', async () => {
    const file = configFile('serve.yaml', ['egress:', '  allow: [api.acme.com:443]'].join('\n'));
    const server = await startServer(join(makeTempDir('serve-config'), 'data'), ['--config', file]);
    const put = (name: string, body: unknown) =>
      fetch(`${server.url}/v1/rotation/policies/${name}`, { method: 'PUT', headers: { authorization: `Bearer ${server.rootToken}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await put('acme', policy('acme', 'https://api.acme.com'))).status).toBe(201);
    const refused = await put('meta', policy('meta', 'http://169.254.169.254'));
    expect(refused.status).toBe(422);
    const problem = (await refused.json()) as { error: string; errors?: Array<{ field: string }> };
    expect(problem.error).toBe('ERR_ROTATION_POLICY_INVALID');
    expect(problem.errors?.map((entry) => entry.field)).toEqual(['policy.connector.settings.create.url', 'policy.connector.settings.test.url', 'policy.connector.settings.revoke.url']);
    // The file registers no program: a command connector is refused, naming the field.
    const command = await put('cmd', { policy: { name: 'cmd', target: { secret: 'apps/cmd' }, schedule: { every: '30d' }, overlap: '1h', connector: { type: 'command', settings: { program: 'refresh' } } } });
    expect(command.status).toBe(422);
    expect(((await command.json()) as { errors?: Array<{ field: string }> }).errors?.map((entry) => entry.field)).toEqual(['policy.connector.settings.program']);
    await server.stop();
  });

  it('will not start with a configuration file in the data directory that others can write', async () => {
    const dataDir = join(makeTempDir('serve-open'), 'data');
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    writeFileSync(join(dataDir, 'keysmith.yaml'), 'listen: 7370\n');
    chmodSync(join(dataDir, 'keysmith.yaml'), 0o666);
    const started = await startServer(dataDir).then(
      () => 'started',
      (error: Error) => error.message,
    );
    expect(started).toContain('keysmith serve exited (code 2');
    expect(started).toContain('the configuration file is open to group or others (mode 0666)');
  });
});
