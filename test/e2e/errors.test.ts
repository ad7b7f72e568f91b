/** Exit codes and messages of the built CLI: 2 for bad usage, 1 for refusals, JSON errors under --json, and authentication. */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { ensureBuilt, makeTempDir, removeTempDirs, runCli, startServer, stopAll, type TestServer } from './support.js';

let server: TestServer;

beforeAll(async () => {
  ensureBuilt();
  server = await startServer(join(makeTempDir('errors'), 'data'));
});

afterAll(async () => {
  await stopAll();
  removeTempDirs();
});

describe.concurrent('bad usage exits 2 with a message', { timeout: 120_000 }, () => {
  it('rejects an unknown command', async ({ expect }) => {
    const result = await server.cli(['keys', 'frobnicate']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/unknown command "keys frobnicate"/);
    expect(result.stdout).toBe('');
  });

  it('rejects an unknown flag', async ({ expect }) => {
    const result = await server.cli(['keys', 'list', '--colour', 'blue']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--colour/);
    expect(result.stderr).toMatch(/Usage: keysmith keys list/);
  });

  it('requires --owner on keys create', async ({ expect }) => {
    const result = await server.cli(['keys', 'create', '--scope', 'a:b']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--owner is required/);
  });

  it('rejects a --label that is not name=value', async ({ expect }) => {
    const result = await server.cli(['keys', 'create', '--owner', 'team', '--label', 'no-equals-sign']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--label "no-equals-sign" is not name=value/);
  });

  it('rejects a malformed key id before calling the server', async ({ expect }) => {
    const result = await server.cli(['keys', 'show', 'key_tooshort']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/"key_tooshort" is not a key id/);
  });

  it('exits 2 for a negative --ttl, whether the parser or the server (400) rejects it', async ({ expect }) => {
    const [parsed, result] = await Promise.all([
      server.cli(['keys', 'create', '--owner', 'team', '--ttl', '-5d']),
      server.cli(['keys', 'create', '--owner', 'team', '--ttl=-5d', '--json']),
    ]);
    expect(parsed.code).toBe(2);
    expect(parsed.stderr).toMatch(/--ttl/);
    expect(result.code).toBe(2);
    expect(result.errorJson().error).toMatchObject({ status: 400, category: 'invalid_request' });
    expect(result.errorJson().error.message).toMatch(/ttl must be a positive duration/);
  });

  it('maps a server-side 400 for a --ttl that is not a duration to exit 2', async ({ expect }) => {
    const result = await server.cli(['keys', 'create', '--owner', 'team', '--ttl', 'abc']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^Error: ttl must be a positive duration .*"abc"/m);
  });

  it('writes usage errors as JSON on stderr under --json, with nothing on stdout', async ({ expect }) => {
    const result = await server.cli(['keys', 'create', '--label', 'team=a', '--json']);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.errorJson()).toEqual({ error: { code: 'usage', message: expect.stringMatching(/--owner is required/) } });
  });
});

describe.concurrent('refused operations exit 1', { timeout: 120_000 }, () => {
  it('refuses to rotate a revoked key (409), as JSON on stderr under --json', async ({ expect }) => {
    const created = await server.cli(['keys', 'create', '--owner', 'team-refused', '--json']);
    expect(created.code, created.stderr).toBe(0);
    const { id } = created.json();
    const revoked = await server.cli(['keys', 'revoke', id]);
    expect(revoked.code, revoked.stderr).toBe(0);

    const rotated = await server.cli(['keys', 'rotate', id, '--json']);
    expect(rotated.code).toBe(1);
    expect(rotated.stdout).toBe('');
    expect(rotated.errorJson().error).toMatchObject({ code: 'ERR_KEY_REVOKED', status: 409, category: 'conflict' });
    expect(rotated.errorJson().error.message).toContain(id);
  });
});

describe.concurrent('authentication', { timeout: 120_000 }, () => {
  it('refuses with exit 1 when there is no token at all', async ({ expect }) => {
    // No KEYSMITH_TOKEN, and the working directory has no .keysmith/root-token to fall back on.
    const result = await runCli(['keys', 'list'], { env: { KEYSMITH_ADDR: server.url } });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^Error: send a management token/m);

    const json = await runCli(['keys', 'list', '--json'], { env: { KEYSMITH_ADDR: server.url } });
    expect(json.code).toBe(1);
    expect(json.errorJson().error).toMatchObject({ code: 'ERR_UNAUTHENTICATED', category: 'unauthenticated', status: 401 });
  });

  it('refuses with exit 1 when the token is wrong, without echoing it', async ({ expect }) => {
    const wrong = 'ksm_live_this-is-not-a-token';
    const result = await server.cli(['keys', 'list', '--json'], { env: { KEYSMITH_TOKEN: wrong } });
    expect(result.code).toBe(1);
    expect(result.errorJson().error).toMatchObject({ category: 'unauthenticated', status: 401 });
    expect(result.stderr).not.toContain(wrong);
  });

  it('issues a verify-only token that can verify keys but not create them', async ({ expect }) => {
    const [tokenRun, keyRun] = await Promise.all([
      server.cli(['tokens', 'create', '--scope', 'keys:verify', '--owner', 'gateway', '--ttl', '1d']),
      server.cli(['keys', 'create', '--owner', 'team-gw', '--json']),
    ]);
    expect(tokenRun.code, tokenRun.stderr).toBe(0);
    expect(tokenRun.stdout).toMatch(/cannot be shown again/);
    expect(tokenRun.stdout).toMatch(/^scopes\s+keys:verify$/m);
    const token = /^Token: (\S+)$/m.exec(tokenRun.stdout)?.[1];
    expect(token).toMatch(/^ksm_live_/);
    expect(keyRun.code, keyRun.stderr).toBe(0);

    const [verified, created] = await Promise.all([
      server.cli(['keys', 'verify', keyRun.json().key], { env: { KEYSMITH_TOKEN: token } }),
      server.cli(['keys', 'create', '--owner', 'intruder'], { env: { KEYSMITH_TOKEN: token } }),
    ]);
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.stdout).toMatch(/^VALID/);
    expect(created.code).toBe(1);
    expect(created.stderr).toMatch(/lacks the scope "keys:create"/);
  });

  it('lists, rotates and revokes management tokens, refusing one that would outrank the caller', async ({ expect }) => {
    const issued = await server.cli(['tokens', 'create', '--scope', 'tokens:*', '--owner', 'token-admin', '--json']);
    expect(issued.code, issued.stderr).toBe(0);
    const admin = issued.json<{ key: string; id: string }>();
    const rootId = (await server.cli(['tokens', 'list', '--all', '--json'])).json<{ data: Array<{ id: string; owner: string; scopes: string[] }> }>()
      .data.find((t) => t.owner === 'root')!.id;

    const escalate = await server.cli(['tokens', 'rotate', rootId, '--json'], { env: { KEYSMITH_TOKEN: admin.key } });
    expect(escalate.code).toBe(1);
    expect(escalate.errorJson().error.code).toBe('ERR_SCOPE_ESCALATION');

    const rotated = await server.cli(['tokens', 'rotate', admin.id, '--overlap', '1h', '--json'], { env: { KEYSMITH_TOKEN: admin.key } });
    expect(rotated.code, rotated.stderr).toBe(0);
    const successor = rotated.json<{ key: string; id: string; scopes: string[] }>();
    expect(successor.scopes).toEqual(['tokens:*']);

    const revoked = await server.cli(['tokens', 'revoke', admin.id, '--reason', 'rotated'], { env: { KEYSMITH_TOKEN: successor.key } });
    expect(revoked.code, revoked.stderr).toBe(0);
    const refused = await server.cli(['tokens', 'list'], { env: { KEYSMITH_TOKEN: admin.key } });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/revoked/);
    const shown = await server.cli(['tokens', 'show', successor.id, '--json'], { env: { KEYSMITH_TOKEN: successor.key } });
    expect(shown.json<{ replaces: string }>().replaces).toBe(admin.id);
  });
});
