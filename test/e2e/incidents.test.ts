/** The built CLI running break-glass incidents against a real server on a temporary data directory. */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ISSUED_KEY_RE, ensureBuilt, makeTempDir, removeTempDirs, startServer, stopAll, type TestServer } from './support.js';

let server: TestServer;

beforeAll(async () => {
  ensureBuilt();
  server = await startServer(join(makeTempDir('incidents'), 'data'));
});

afterAll(async () => {
  await stopAll();
  removeTempDirs();
});

async function createKeys(owner: string, n: number): Promise<Array<{ id: string; key: string }>> {
  const out = [];
  for (let i = 0; i < n; i++) {
    const created = await server.cli(['keys', 'create', '--owner', owner, '--label', 'team=e2e', '--json']);
    expect(created.code, created.stderr).toBe(0);
    out.push(created.json() as { id: string; key: string });
  }
  return out;
}

async function verifyCode(key: string): Promise<string> {
  const verified = await server.cli(['keys', 'verify', '-', '--json'], { input: `${key}\n` });
  return (verified.json() as { code: string }).code;
}

describe('incident revoke', { timeout: 120_000 }, () => {
  it('plans with --dry-run --json and changes nothing, then revokes with --yes', async () => {
    const keys = await createKeys('e2e-breach', 3);
    const [bystander] = await createKeys('e2e-bystander', 1);

    const dry = await server.cli(['incident', 'revoke', '--select', 'owner=e2e-breach,label=team=e2e', '--dry-run', '--json']);
    expect(dry.code, dry.stderr).toBe(0);
    const plan = dry.json();
    expect(plan).toMatchObject({ dryRun: true, action: 'revoke', select: 'owner=e2e-breach,label=team=e2e', total: 3, truncated: false });
    expect(plan.keys.map((k: { id: string }) => k.id).sort()).toEqual(keys.map((k) => k.id).sort());
    for (const k of keys) expect(await verifyCode(k.key)).toBe('VALID');

    // Under --json nobody can be asked: --yes is required.
    const unconfirmed = await server.cli(['incident', 'revoke', '--select', 'owner=e2e-breach', '--reason', 'leaked', '--json']);
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.errorJson().error).toMatchObject({ code: 'usage', message: expect.stringMatching(/--yes/) });
    // Off a terminal, in text mode, too.
    const piped = await server.cli(['incident', 'revoke', '--select', 'owner=e2e-breach', '--reason', 'leaked']);
    expect(piped.code).toBe(2);
    expect(piped.stderr).toMatch(/--yes/);
    for (const k of keys) expect(await verifyCode(k.key)).toBe('VALID');

    const done = await server.cli(['incident', 'revoke', '--select', 'owner=e2e-breach', '--reason', 'leaked in CI logs', '--yes', '--json']);
    expect(done.code, done.stderr).toBe(0);
    const { incident } = done.json();
    expect(incident).toMatchObject({ action: 'revoke', status: 'done', keyCount: 3, reason: 'leaked in CI logs' });
    for (const k of keys) expect(await verifyCode(k.key)).toBe('REVOKED');
    expect(await verifyCode(bystander!.key)).toBe('VALID');

    const listed = await server.cli(['incident', 'list', '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.json().data.map((i: { id: string }) => i.id)).toContain(incident.id);
    const shown = await server.cli(['incident', 'show', incident.id]);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/^keys\s+3 of 3 planned$/m);
    expect(shown.stdout).toMatch(/^status\s+done$/m);
  });

  it('prints the plan, then the outcome, in text mode with --yes', async () => {
    await createKeys('e2e-text', 2);
    const done = await server.cli(['incident', 'revoke', '--select', 'owner=e2e-text', '--reason', 'drill', '--yes']);
    expect(done.code, done.stderr).toBe(0);
    expect(done.stdout).toMatch(/^Plan: revoke 2 keys matching owner=e2e-text$/m);
    expect(done.stdout).toMatch(/^Incident inc_[0-9A-Za-z]{22} done: revoked 2 of 2 planned keys\.$/m);
  });

  it('exits 2 on a bad selector or missing flags, naming the problem, and never echoes a key', async () => {
    const bad = await server.cli(['incident', 'revoke', '--select', 'colour=red', '--reason', 'x', '--yes', '--json']);
    expect(bad.code).toBe(2);
    expect(bad.errorJson().error).toMatchObject({ code: 'ERR_INCIDENT_SELECTOR_INVALID', status: 400 });
    const [k] = await createKeys('e2e-echo', 1);
    const leaked = await server.cli(['incident', 'revoke', '--select', `key=${k!.key}`, '--reason', 'x', '--yes']);
    expect(leaked.code).toBe(2);
    expect(leaked.stderr + leaked.stdout).not.toContain(k!.key);
    const missing = await server.cli(['incident', 'revoke', '--reason', 'x', '--yes']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--select is required/);
    const noReason = await server.cli(['incident', 'revoke', '--select', 'owner=x', '--yes']);
    expect(noReason.code).toBe(2);
    expect(noReason.stderr).toMatch(/--reason is required/);
    const badId = await server.cli(['incident', 'show', 'inc_nope']);
    expect(badId.code).toBe(2);
  });

  it('exits 1 when the token lacks incidents:write', async () => {
    const token = await server.cli(['tokens', 'create', '--scope', 'incidents:read', '--json']);
    expect(token.code, token.stderr).toBe(0);
    const refused = await server.cli(['incident', 'revoke', '--select', 'owner=anyone', '--reason', 'x', '--yes', '--json'], { env: { KEYSMITH_TOKEN: token.json().key } });
    expect(refused.code).toBe(1);
    expect(refused.errorJson().error).toMatchObject({ code: 'ERR_FORBIDDEN', status: 403 });
  });
});

describe('incident rotate', { timeout: 120_000 }, () => {
  it('writes the new keys to --out (JSON lines, 0600) and never to stdout; old and new keys verify', async () => {
    const olds = await createKeys('e2e-rotor', 2);
    const file = join(makeTempDir('incident-out'), 'new-keys.jsonl');
    const rotated = await server.cli(['incident', 'rotate', '--select', 'owner=e2e-rotor', '--reason', 'vendor breach', '--overlap', '1h', '--out', file, '--yes', '--json']);
    expect(rotated.code, rotated.stderr).toBe(0);
    const data = rotated.json();
    expect(data).toMatchObject({ incident: { action: 'rotate', keyCount: 2, overlap: '1h' }, keysFile: file, keyCount: 2 });
    expect(rotated.stdout.match(ISSUED_KEY_RE)).toBeNull();
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { id: string; replaces: string; key: string });
    expect(lines.map((l) => l.replaces).sort()).toEqual(olds.map((k) => k.id).sort());
    for (const line of lines) expect(await verifyCode(line.key)).toBe('VALID');
    for (const old of olds) expect(await verifyCode(old.key)).toBe('VALID');

    // Never written over.
    await createKeys('e2e-rotor-2', 1);
    const again = await server.cli(['incident', 'rotate', '--select', 'owner=e2e-rotor-2', '--reason', 'x', '--out', file, '--yes']);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/already exists/);
  });

  it('prints the new keys once, with a warning, without --out', async () => {
    await createKeys('e2e-rotor-print', 1);
    const rotated = await server.cli(['incident', 'rotate', '--select', 'owner=e2e-rotor-print', '--reason', 'x', '--yes']);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stdout.match(ISSUED_KEY_RE)).toHaveLength(1);
    expect(rotated.stdout).toMatch(/cannot be shown again/);
  });
});
