/** The built CLI issuing, verifying and managing keys against a real server on a temporary data directory. */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { ISSUED_KEY_RE, ensureBuilt, makeTempDir, removeTempDirs, startServer, stopAll, type TestServer } from './support.js';

let server: TestServer;

beforeAll(async () => {
  ensureBuilt();
  server = await startServer(join(makeTempDir('keys'), 'data'));
});

afterAll(async () => {
  await stopAll();
  removeTempDirs();
});

describe.concurrent('keys create and verify', { timeout: 120_000 }, () => {
  it('prints the new key once, with a warning that it cannot be shown again', async ({ expect }) => {
    const created = await server.cli(['keys', 'create', '--owner', 'team-a', '--scope', 'orders:read', '--label', 'team=a']);
    expect(created.code, created.stderr).toBe(0);
    const keys = created.stdout.match(ISSUED_KEY_RE) ?? [];
    expect(keys).toHaveLength(1);
    expect(created.stdout).toMatch(/cannot be shown again/);
    expect(created.stdout).toMatch(/^owner\s+team-a$/m);
    expect(created.stdout).toMatch(/^id\s+key_[0-9A-Za-z]{22}$/m);

    // The printed key is the real one: it verifies, read from stdin so it stays out of argv.
    const verified = await server.cli(['keys', 'verify', '-'], { input: `${keys[0]}\n` });
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.stdout).toMatch(/^VALID/);
  });

  it('gives JSON with key and id under --json, and that key verifies with exit 0', async ({ expect }) => {
    const created = await server.cli(['keys', 'create', '--owner', 'team-b', '--env', 'test', '--scope', 'a:b', '--ttl', '1d', '--rate-limit', '100/1m', '--ip', '127.0.0.1/32', '--json']);
    expect(created.code, created.stderr).toBe(0);
    const issued = created.json();
    expect(issued.id).toMatch(/^key_[0-9A-Za-z]{22}$/);
    expect(issued.key).toMatch(/^ks_test_/);
    expect(issued).toMatchObject({ owner: 'team-b', env: 'test', scopes: ['a:b'], rateLimit: { limit: 100, window: '1m' }, ipAllowlist: ['127.0.0.1/32'] });

    const verified = await server.cli(['keys', 'verify', issued.key, '--scope', 'a:b', '--json']);
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.json()).toMatchObject({ valid: true, code: 'VALID', keyId: issued.id, owner: 'team-b' });
  });

  it('answers MALFORMED with exit 1 for a garbage key', async ({ expect }) => {
    const verified = await server.cli(['keys', 'verify', 'ks_live_not-a-real-key']);
    expect(verified.code).toBe(1);
    expect(verified.stdout).toMatch(/MALFORMED/);
    expect(verified.stdout).not.toMatch(/^VALID/m);
  });
});

describe.concurrent('key lifecycle through the CLI', { timeout: 120_000 }, () => {
  it('creates, lists, rotates with overlap, revokes, and retires a key', async ({ expect }) => {
    const [createdA, createdOther] = await Promise.all([
      server.cli(['keys', 'create', '--owner', 'team-life', '--scope', 'orders:read', '--label', 'team=life', '--label', 'tier=gold', '--json']),
      server.cli(['keys', 'create', '--owner', 'team-life', '--label', 'team=other', '--json']),
    ]);
    expect(createdA.code, createdA.stderr).toBe(0);
    expect(createdOther.code, createdOther.stderr).toBe(0);
    const a = createdA.json();
    const other = createdOther.json();

    const [filtered, listed] = await Promise.all([
      server.cli(['keys', 'list', '--label', 'team=life', '--json']),
      server.cli(['keys', 'list', '--owner', 'team-life']),
    ]);
    expect(filtered.code, filtered.stderr).toBe(0);
    const ids = filtered.json().data.map((record: { id: string }) => record.id);
    expect(ids).toEqual([a.id]);
    expect(ids).not.toContain(other.id);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/^ID\s+OWNER\s+ENV\s+STATUS\s+SCOPES\s+EXPIRESAT\s+LASTUSEDAT$/m);
    expect(listed.stdout).toContain(a.id);
    expect(listed.stdout).toContain(other.id);

    const rotatedRun = await server.cli(['keys', 'rotate', a.id, '--overlap', '1h', '--json']);
    expect(rotatedRun.code, rotatedRun.stderr).toBe(0);
    const b = rotatedRun.json();
    expect(b.id).not.toBe(a.id);
    expect(b.key).not.toBe(a.key);
    expect(b.previous).toMatchObject({ id: a.id, replacedBy: b.id });

    const [oldDuringOverlap, successor] = await Promise.all([
      server.cli(['keys', 'verify', a.key]),
      server.cli(['keys', 'verify', b.key, '--json']),
    ]);
    expect(oldDuringOverlap.code, oldDuringOverlap.stderr).toBe(0);
    expect(oldDuringOverlap.stdout).toMatch(/^VALID/);
    expect(oldDuringOverlap.stdout).toContain(`replaced by ${b.id}`);
    expect(successor.code).toBe(0);
    expect(successor.json()).toMatchObject({ valid: true, keyId: b.id });
    expect(successor.json().rotation).toBeUndefined();

    const revoked = await server.cli(['keys', 'revoke', a.id, '--reason', 'rotated out']);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toMatch(/^revokeReason\s+rotated out$/m);

    const afterRevoke = await server.cli(['keys', 'verify', a.key]);
    expect(afterRevoke.code).toBe(1);
    expect(afterRevoke.stdout).toMatch(/REVOKED/);

    const retired = await server.cli(['keys', 'retire', a.id]);
    expect(retired.code, retired.stderr).toBe(0);

    const shown = await server.cli(['keys', 'show', a.id]);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/^retiredAt\s+\d{4}-\d\d-\d\dT/m);
    expect(shown.stdout).toMatch(/^status\s+revoked$/m);
    expect(shown.stdout.match(ISSUED_KEY_RE)).toBeNull();
  });

  it('narrows scopes with update and refuses to widen them with exit 1', async ({ expect }) => {
    const created = await server.cli(['keys', 'create', '--owner', 'team-upd', '--scope', 'orders:read', '--scope', 'orders:write', '--json']);
    expect(created.code, created.stderr).toBe(0);
    const key = created.json();

    const narrowed = await server.cli(['keys', 'update', key.id, '--scope', 'orders:read', '--purpose', 'read-only now', '--json']);
    expect(narrowed.code, narrowed.stderr).toBe(0);
    expect(narrowed.json()).toMatchObject({ scopes: ['orders:read'], purpose: 'read-only now' });

    const [widened, writeCheck] = await Promise.all([
      server.cli(['keys', 'update', key.id, '--scope', 'orders:write']),
      server.cli(['keys', 'verify', key.key, '--scope', 'orders:write']),
    ]);
    expect(widened.code).toBe(1);
    expect(widened.stderr).toMatch(/narrowed/);
    expect(writeCheck.code).toBe(1);
    expect(writeCheck.stdout).toMatch(/INSUFFICIENT_SCOPE/);
  });

  it('disables a key so it answers DISABLED, and enables it again', async ({ expect }) => {
    const created = await server.cli(['keys', 'create', '--owner', 'team-toggle', '--json']);
    expect(created.code, created.stderr).toBe(0);
    const key = created.json();

    const disabled = await server.cli(['keys', 'disable', key.id]);
    expect(disabled.code, disabled.stderr).toBe(0);
    expect(disabled.stdout).toMatch(/^status\s+disabled$/m);
    const whileDisabled = await server.cli(['keys', 'verify', key.key]);
    expect(whileDisabled.code).toBe(1);
    expect(whileDisabled.stdout).toMatch(/DISABLED/);

    const enabled = await server.cli(['keys', 'enable', key.id, '--json']);
    expect(enabled.code, enabled.stderr).toBe(0);
    expect(enabled.json()).toMatchObject({ status: 'active', disabledAt: null });
    const afterEnable = await server.cli(['keys', 'verify', key.key]);
    expect(afterEnable.code, afterEnable.stdout).toBe(0);
  });

  it('shows usage counts by outcome after verifications', async ({ expect }) => {
    const created = await server.cli(['keys', 'create', '--owner', 'team-usage', '--scope', 'orders:read', '--json']);
    expect(created.code, created.stderr).toBe(0);
    const key = created.json();

    const results = await Promise.all([
      server.cli(['keys', 'verify', key.key]),
      server.cli(['keys', 'verify', key.key, '--scope', 'orders:read']),
      server.cli(['keys', 'verify', key.key, '--scope', 'orders:delete']),
    ]);
    expect(results.map((result) => result.code)).toEqual([0, 0, 1]);

    const [usageJson, usageText] = await Promise.all([
      server.cli(['keys', 'usage', key.id, '--since', '1h', '--json']),
      server.cli(['keys', 'usage', key.id]),
    ]);
    expect(usageJson.code, usageJson.stderr).toBe(0);
    const usage = usageJson.json();
    expect(usage.totals).toEqual({ VALID: 2, INSUFFICIENT_SCOPE: 1 });
    expect(usage.lastUsedAt).not.toBeNull();
    expect(usage.minutes.reduce((sum: number, minute: { total: number }) => sum + minute.total, 0)).toBe(3);

    expect(usageText.code, usageText.stderr).toBe(0);
    expect(usageText.stdout).toMatch(/^verifications\s+3$/m);
    expect(usageText.stdout).toMatch(/INSUFFICIENT_SCOPE=1 VALID=2/);
    expect(usageText.stdout).toMatch(/^last used\s+\d{4}-.* from \S+ \(keysmith-cli\)$/m);
    expect(usageText.stdout).toMatch(/^MINUTE\s+TOTAL\s+INSUFFICIENT_SCOPE\s+VALID$/m);
  });
});
