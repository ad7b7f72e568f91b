/** The server process and its data directory: durability across kill -9, master key permissions, and init. */
import { chmodSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { ISSUED_KEY_RE, ensureBuilt, makeTempDir, removeTempDirs, runCli, startServer, stopAll } from './support.js';

beforeAll(() => {
  ensureBuilt();
});

afterAll(async () => {
  await stopAll();
  removeTempDirs();
});

describe.concurrent('keysmith serve and init', { timeout: 120_000 }, () => {
  it('keeps a key that was acknowledged before the server was killed with SIGKILL', async ({ expect }) => {
    const dataDir = join(makeTempDir('durable'), 'data');
    const first = await startServer(dataDir);
    const created = await first.cli(['keys', 'create', '--owner', 'team-durable', '--json']);
    expect(created.code, created.stderr).toBe(0);
    const { key, id } = created.json();
    const killed = await first.crash();
    expect(killed.signal).toBe('SIGKILL');

    const second = await startServer(dataDir);
    expect(second.url).not.toBe('');
    const verified = await second.cli(['keys', 'verify', key, '--json']);
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.json()).toMatchObject({ valid: true, keyId: id });
    await second.stop();
  });

  it('refuses to start when master.key is readable by others, naming the file and chmod', async ({ expect }) => {
    const dataDir = join(makeTempDir('perms'), 'data');
    const init = await runCli(['init', '--data', dataDir]);
    expect(init.code, init.stderr).toBe(0);
    const masterKey = join(dataDir, 'master.key');
    chmodSync(masterKey, 0o644);

    // Bounded: if it wrongly starts listening, it is killed after the timeout and the test fails.
    const serve = await runCli(['serve', '--data', dataDir, '--addr', '127.0.0.1:0', '--log-level', 'silent'], { timeoutMs: 15_000 });
    expect(serve.signal).toBeNull();
    expect(serve.code).not.toBe(0);
    expect(serve.stderr).toContain(masterKey);
    expect(serve.stderr).toMatch(/chmod 600/);
    expect(serve.stderr).not.toMatch(/listening/);
  });

  it('prints a root token on the first init only, and says it is already initialised the second time', async ({ expect }) => {
    const dataDir = join(makeTempDir('init'), 'data');
    const first = await runCli(['init', '--data', dataDir]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^Root token: ksm_live_\S+$/m);
    expect(first.stdout.match(ISSUED_KEY_RE)).toHaveLength(1);
    expect(existsSync(join(dataDir, 'root-token'))).toBe(true);

    const second = await runCli(['init', '--data', dataDir]);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toMatch(/already initialised/);
    expect(second.stdout).not.toMatch(/Root token/);
    expect(second.stdout.match(ISSUED_KEY_RE)).toBeNull();
  });
});
