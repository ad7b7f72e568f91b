/** The built CLI storing, reading, staging, deleting and destroying secrets, and rotating the KEK, against a real server. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { ensureBuilt, makeTempDir, removeTempDirs, startServer, stopAll, type TestServer } from './support.js';

let server: TestServer;
let files: string;

beforeAll(async () => {
  ensureBuilt();
  server = await startServer(join(makeTempDir('secrets'), 'data'));
  files = makeTempDir('secret-files');
});

afterAll(async () => {
  await stopAll();
  removeTempDirs();
});

describe.concurrent('secrets put and get', { timeout: 120_000 }, () => {
  it('stores a value piped on stdin without its final newline, and get prints it back', async ({ expect }) => {
    const put = await server.cli(['secrets', 'put', 'e2e/stdin/token', '--owner', 'team-e2e', '--label', 'env=test'], { input: 'tok-1234567\n' });
    expect(put.code, put.stderr).toBe(0);
    expect(put.stdout).toMatch(/^Created e2e\/stdin\/token version 1 \(current\)\./);

    const got = await server.cli(['secrets', 'get', 'e2e/stdin/token']);
    expect(got.code, got.stderr).toBe(0);
    expect(got.stdout).toBe('tok-1234567\n');

    const json = await server.cli(['secrets', 'get', 'e2e/stdin/token', '--json']);
    expect(json.code, json.stderr).toBe(0);
    expect(json.json()).toMatchObject({ path: 'e2e/stdin/token', version: 1, stages: ['current'], value: 'tok-1234567' });
  });

  it('stores a value from --value-file, keeping inner newlines', async ({ expect }) => {
    const file = join(files, 'pem.txt');
    writeFileSync(file, '-----BEGIN KEY-----\nabc\n-----END KEY-----\n');
    const put = await server.cli(['secrets', 'put', 'e2e/file/pem', '--value-file', file, '--json']);
    expect(put.code, put.stderr).toBe(0);
    expect(put.json()).toMatchObject({ path: 'e2e/file/pem', version: 1, created: true, replayed: false });
    const got = await server.cli(['secrets', 'get', 'e2e/file/pem']);
    expect(got.stdout).toBe('-----BEGIN KEY-----\nabc\n-----END KEY-----\n');
  });

  it('stores a JSON object with --json-value and picks a field with get --field', async ({ expect }) => {
    const put = await server.cli(['secrets', 'put', 'e2e/json/db', '--json-value'], { input: '{"username":"app","password":"pw-98765","port":5432}' });
    expect(put.code, put.stderr).toBe(0);
    const whole = await server.cli(['secrets', 'get', 'e2e/json/db']);
    expect(JSON.parse(whole.stdout)).toEqual({ username: 'app', password: 'pw-98765', port: 5432 });
    const field = await server.cli(['secrets', 'get', 'e2e/json/db', '--field', 'password']);
    expect(field.code, field.stderr).toBe(0);
    expect(field.stdout).toBe('pw-98765\n');
    const missing = await server.cli(['secrets', 'get', 'e2e/json/db', '--field', 'nope']);
    expect(missing.code).toBe(1);

    const notObject = await server.cli(['secrets', 'put', 'e2e/json/bad', '--json-value'], { input: '[1,2,3]' });
    expect(notObject.code).toBe(2);
  });

  it('refuses a value given as a flag with exit 2, without echoing it', async ({ expect }) => {
    const put = await server.cli(['secrets', 'put', 'e2e/flag/value', '--value', 'hunter22-flag']);
    expect(put.code).toBe(2);
    expect(put.stderr).toMatch(/stdin|--value-file/);
    expect(put.stderr).not.toContain('hunter22-flag');
    const none = await server.cli(['secrets', 'get', 'e2e/flag/value', '--json']);
    expect(none.code).toBe(1);
    expect(none.errorJson().error.code).toBe('ERR_SECRET_NOT_FOUND');
  });

  it('refuses an empty value and a malformed path with exit 2', async ({ expect }) => {
    const empty = await server.cli(['secrets', 'put', 'e2e/empty/value'], { input: '' });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/empty/);
    const badPath = await server.cli(['secrets', 'put', 'E2E/Upper'], { input: 'x' });
    expect(badPath.code).toBe(2);
  });

  it('replays a put with the same --request-token instead of adding a version', async ({ expect }) => {
    const first = await server.cli(['secrets', 'put', 'e2e/idem/key', '--request-token', 'req-1', '--json'], { input: 'idem-value' });
    expect(first.code, first.stderr).toBe(0);
    const again = await server.cli(['secrets', 'put', 'e2e/idem/key', '--request-token', 'req-1', '--json'], { input: 'idem-value' });
    expect(again.code, again.stderr).toBe(0);
    expect(again.json()).toMatchObject({ version: first.json().version, replayed: true });
  });
});

describe.concurrent('versions, stages and compare-and-set', { timeout: 120_000 }, () => {
  it('puts a pending version, promotes it, rolls back, and lists versions with their stages', async ({ expect }) => {
    const path = 'e2e/stages/api-key';
    expect((await server.cli(['secrets', 'put', path], { input: 'value-one' })).code).toBe(0);
    const pending = await server.cli(['secrets', 'put', path, '--stage', 'pending', '--cas', '1'], { input: 'value-two' });
    expect(pending.code, pending.stderr).toBe(0);
    expect(pending.stdout).toMatch(/secrets promote/);

    expect((await server.cli(['secrets', 'get', path])).stdout).toBe('value-one\n');
    expect((await server.cli(['secrets', 'get', path, '--stage', 'pending'])).stdout).toBe('value-two\n');

    const versions = await server.cli(['secrets', 'versions', path]);
    expect(versions.code, versions.stderr).toBe(0);
    expect(versions.stdout).toMatch(/^v2\s+pending\s/m);
    expect(versions.stdout).toMatch(/^v1\s+current\s/m);
    expect(versions.stdout).not.toContain('value-one');

    const promoted = await server.cli(['secrets', 'promote', path, '--cas', '1', '--json']);
    expect(promoted.code, promoted.stderr).toBe(0);
    expect(promoted.json()).toMatchObject({ currentVersion: 2, stages: { current: 2, previous: 1 } });
    expect((await server.cli(['secrets', 'get', path])).stdout).toBe('value-two\n');
    expect((await server.cli(['secrets', 'get', path, '--version', '1'])).stdout).toBe('value-one\n');

    const rolledBack = await server.cli(['secrets', 'rollback', path, '--json']);
    expect(rolledBack.code, rolledBack.stderr).toBe(0);
    expect(rolledBack.json()).toMatchObject({ currentVersion: 1 });
    expect((await server.cli(['secrets', 'get', path])).stdout).toBe('value-one\n');

    const noPending = await server.cli(['secrets', 'promote', path, '--json']);
    expect(noPending.code).toBe(1);
    expect(noPending.errorJson().error.code).toBe('ERR_SECRET_NO_PENDING');
  });

  it('refuses a put with a stale --cas with exit 1 and the server code under --json', async ({ expect }) => {
    const path = 'e2e/cas/password';
    expect((await server.cli(['secrets', 'put', path, '--cas', '0'], { input: 'cas-one' })).code).toBe(0);
    expect((await server.cli(['secrets', 'put', path, '--cas', '1'], { input: 'cas-two' })).code).toBe(0);
    const stale = await server.cli(['secrets', 'put', path, '--cas', '1', '--json'], { input: 'cas-three' });
    expect(stale.code).toBe(1);
    expect(stale.errorJson().error).toMatchObject({ code: 'ERR_SECRET_CAS_MISMATCH', status: 409 });
    expect(stale.stderr).not.toContain('cas-three');
    const text = await server.cli(['secrets', 'put', path, '--cas', '0'], { input: 'cas-four' });
    expect(text.code).toBe(1);
    expect(text.stderr).toMatch(/^Error: /);
  });

  it('moves a custom stage onto a version and off again', async ({ expect }) => {
    const path = 'e2e/custom/stage';
    await server.cli(['secrets', 'put', path], { input: 'stage-one' });
    await server.cli(['secrets', 'put', path], { input: 'stage-two' });
    const moved = await server.cli(['secrets', 'stage', path, 'canary', '1', '--json']);
    expect(moved.code, moved.stderr).toBe(0);
    expect(moved.json().stages).toMatchObject({ canary: 1, current: 2 });
    expect((await server.cli(['secrets', 'get', path, '--stage', 'canary'])).stdout).toBe('stage-one\n');
    const off = await server.cli(['secrets', 'stage', path, 'canary', 'none', '--json']);
    expect(off.code, off.stderr).toBe(0);
    expect(off.json().stages.canary).toBeUndefined();
    expect((await server.cli(['secrets', 'stage', path, 'canary', 'latest'])).code).toBe(2);
  });
});

describe.concurrent('deletion, destruction and readers', { timeout: 120_000 }, () => {
  it('deletes a secret softly, lists it under --deleted, and restores it', async ({ expect }) => {
    const path = 'e2e/delete/me';
    await server.cli(['secrets', 'put', path], { input: 'delete-value' });
    const deleted = await server.cli(['secrets', 'delete', path, '--recovery-window', '7d']);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stdout).toMatch(/secrets restore e2e\/delete\/me/);

    const gone = await server.cli(['secrets', 'get', path, '--json']);
    expect(gone.code).toBe(1);
    expect(gone.errorJson().error.code).toBe('ERR_SECRET_SCHEDULED_FOR_DELETION');

    const listed = await server.cli(['secrets', 'list', '--deleted', '--prefix', 'e2e/delete/', '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.json().data.map((s: { path: string }) => s.path)).toEqual([path]);
    const live = await server.cli(['secrets', 'list', '--prefix', 'e2e/delete/', '--all', '--json']);
    expect(live.json().data).toEqual([]);

    const restored = await server.cli(['secrets', 'restore', path]);
    expect(restored.code, restored.stderr).toBe(0);
    expect((await server.cli(['secrets', 'get', path])).stdout).toBe('delete-value\n');
  });

  it('destroys old versions so they cannot be read, keeping their history', async ({ expect }) => {
    const path = 'e2e/destroy/key';
    await server.cli(['secrets', 'put', path], { input: 'destroy-one' });
    await server.cli(['secrets', 'put', path], { input: 'destroy-two' });
    await server.cli(['secrets', 'put', path], { input: 'destroy-three' });
    const destroyed = await server.cli(['secrets', 'destroy', path, '--version', '1', '--version', '2', '--json']);
    expect(destroyed.code, destroyed.stderr).toBe(0);
    const byVersion = new Map(destroyed.json().versions.map((v: { version: number; destroyedAt: string | null }) => [v.version, v.destroyedAt]));
    expect(byVersion.get(1)).toMatch(/^\d{4}-/);
    expect(byVersion.get(2)).toMatch(/^\d{4}-/);
    expect(byVersion.get(3)).toBeNull();

    const read = await server.cli(['secrets', 'get', path, '--version', '1', '--json']);
    expect(read.code).toBe(1);
    expect(read.errorJson().error.code).toBe('ERR_SECRET_VERSION_DESTROYED');
    expect((await server.cli(['secrets', 'destroy', path])).code).toBe(2);
  });

  it('lists who read a version and how often', async ({ expect }) => {
    const path = 'e2e/readers/key';
    await server.cli(['secrets', 'put', path], { input: 'reader-value' });
    for (let i = 0; i < 3; i += 1) expect((await server.cli(['secrets', 'get', path])).code).toBe(0);
    const readers = await server.cli(['secrets', 'readers', path, '--since', '1h', '--json']);
    expect(readers.code, readers.stderr).toBe(0);
    const body = readers.json();
    expect(body).toMatchObject({ path, version: 1, total: 3 });
    expect(body.readers).toHaveLength(1);
    expect(body.readers[0].reads).toBe(3);
    const text = await server.cli(['secrets', 'readers', path]);
    expect(text.stdout).toMatch(/^PRINCIPAL\s+READS\s+LASTREADAT$/m);
  });
});

describe('key-encryption keys', { timeout: 120_000 }, () => {
  it('rotates the KEK with --json, waits for the re-wrap with status --watch, and retires the old version', async ({ expect }) => {
    await server.cli(['secrets', 'put', 'e2e/kek/one'], { input: 'kek-value-1' });
    const before = await server.cli(['kek', 'status', '--json']);
    expect(before.code, before.stderr).toBe(0);
    const from = before.json().currentVersion as number;

    const rotated = await server.cli(['kek', 'rotate', '--json']);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stderr).toBe('');
    expect(rotated.json().currentVersion).toBe(from + 1);

    const watched = await server.cli(['kek', 'status', '--watch', '--json']);
    expect(watched.code, watched.stderr).toBe(0);
    expect(watched.stderr).toBe('');
    const status = watched.json();
    expect(status.rewrap.remaining).toBe(0);
    expect(status.versions.find((v: { version: number }) => v.version === from).dataKeys).toBe(0);

    // Values still read after their data keys moved to the new KEK.
    expect((await server.cli(['secrets', 'get', 'e2e/kek/one'])).stdout).toBe('kek-value-1\n');

    const retired = await server.cli(['kek', 'retire', String(from), '--json']);
    expect(retired.code, retired.stderr).toBe(0);
    expect(retired.json().versions.find((v: { version: number }) => v.version === from).state).toBe('retired');

    const current = await server.cli(['kek', 'retire', String(from + 1), '--json']);
    expect(current.code).toBe(1);
    expect(current.errorJson().error.code).toBe('ERR_KEK_VERSION_CURRENT');
    expect((await server.cli(['kek', 'retire', 'latest'])).code).toBe(2);

    const text = await server.cli(['kek', 'status']);
    expect(text.stdout).toMatch(/^VERSION\s+STATE\s+DATAKEYS/m);
  });
});
