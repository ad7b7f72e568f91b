/**
 * The audit trail through the built CLI: events for every action and never a key in them, the
 * chain verified through the API, and offline verification naming the event that was edited or
 * deleted directly in the SQLite file.
 */
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ISSUED_KEY_RE, ensureBuilt, makeTempDir, removeTempDirs, runCli, startServer, stopAll, type TestServer } from './support.js';

interface AuditEvent {
  seq: number;
  actor: string;
  action: string;
  target: string | null;
  data: Record<string, unknown>;
}

let server: TestServer;
let dataDir: string;
/** Every key and token string issued in this file, to look for in the audit log. */
const issuedSecrets: string[] = [];
let keyId: string;

beforeAll(async () => {
  ensureBuilt();
  dataDir = join(makeTempDir('audit'), 'data');
  server = await startServer(dataDir);
  issuedSecrets.push(server.rootToken);

  const [created, token] = await Promise.all([
    server.cli(['keys', 'create', '--owner', 'team-audit', '--scope', 'orders:read', '--json']),
    server.cli(['tokens', 'create', '--scope', 'keys:verify', '--json']),
  ]);
  if (created.code !== 0 || token.code !== 0) throw new Error(`setup failed:\n${created.stderr}\n${token.stderr}`);
  keyId = created.json().id;
  issuedSecrets.push(created.json().key, token.json().key);
  const rotated = await server.cli(['keys', 'rotate', keyId, '--overlap', '1h', '--json']);
  if (rotated.code !== 0) throw new Error(`rotate failed:\n${rotated.stderr}`);
  issuedSecrets.push(rotated.json().key);
  const revoked = await server.cli(['keys', 'revoke', keyId, '--reason', 'audit test']);
  if (revoked.code !== 0) throw new Error(`revoke failed:\n${revoked.stderr}`);
}, 120_000);

afterAll(async () => {
  await stopAll();
  removeTempDirs();
});

describe('audit trail', { timeout: 120_000 }, () => {
  it('lists an event for each action taken, and no event carries an issued key', async () => {
    const [listed, table] = await Promise.all([server.cli(['audit', 'list', '--all', '--limit', '2', '--json']), server.cli(['audit', 'list', '--target', keyId])]);
    expect(listed.code, listed.stderr).toBe(0);
    const events = listed.json().data as AuditEvent[];
    expect(listed.json().nextCursor).toBeNull();
    expect(events.map((event) => event.seq)).toEqual(events.map((_, i) => i + 1));
    const actions = events.map((event) => `${event.action} ${event.target}`);
    expect(actions).toContain(`key.issued ${keyId}`);
    expect(actions).toContain(`key.rotated ${keyId}`);
    expect(actions).toContain(`key.revoked ${keyId}`);
    expect(events.some((event) => event.action === 'token.issued' && event.actor !== 'system:init')).toBe(true);

    const raw = listed.stdout;
    expect(issuedSecrets.length).toBe(4);
    for (const secret of issuedSecrets) expect(raw).not.toContain(secret);
    expect(raw.match(ISSUED_KEY_RE)).toBeNull();

    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^SEQ\s+TIME\s+ACTOR\s+ACTION\s+TARGET$/m);
    expect(table.stdout).toMatch(/key\.revoked\s+key_/);
    expect(table.stdout).not.toMatch(/token\.issued/);
  });

  it('reports the chain intact through the API', async () => {
    const verified = await server.cli(['audit', 'verify']);
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.stdout).toMatch(/Audit chain intact: \d+ events/);
  });

  it('names the edited or deleted event when verifying the data directory offline', async () => {
    // Stops this file's server, so it runs last; it reads the events from the file itself.
    const stopped = await server.stop();
    expect(stopped.code).toBe(0);
    const original = new Database(join(dataDir, 'keysmith.db'), { readonly: true });
    const rows = original.prepare('select seq, action from audit_events order by seq').all() as Array<{ seq: number; action: string }>;
    original.close();
    const revokedEvent = rows.find((row) => row.action === 'key.revoked');
    const rotatedEvent = rows.find((row) => row.action === 'key.rotated');
    expect(revokedEvent).toBeDefined();
    expect(rotatedEvent).toBeDefined();
    const root = makeTempDir('audit-copies');
    const edited = join(root, 'edited');
    const deleted = join(root, 'deleted');
    cpSync(dataDir, edited, { recursive: true });
    cpSync(dataDir, deleted, { recursive: true });

    const editDb = new Database(join(edited, 'keysmith.db'));
    const changed = editDb.prepare('update audit_events set data = ? where seq = ?').run('{"reason":"nothing to see here"}', revokedEvent!.seq);
    editDb.close();
    expect(changed.changes).toBe(1);
    const deleteDb = new Database(join(deleted, 'keysmith.db'));
    const removed = deleteDb.prepare('delete from audit_events where seq = ?').run(rotatedEvent!.seq);
    deleteDb.close();
    expect(removed.changes).toBe(1);

    const [afterEdit, afterDelete, untouched] = await Promise.all([
      runCli(['audit', 'verify', '--data', edited]),
      runCli(['audit', 'verify', '--data', deleted, '--json']),
      runCli(['audit', 'verify', '--data', dataDir]),
    ]);
    expect(afterEdit.code).toBe(1);
    expect(afterEdit.stdout).toContain(`#${revokedEvent!.seq}`);
    expect(afterEdit.stdout).toMatch(/BROKEN/);
    expect(afterDelete.code).toBe(1);
    expect(afterDelete.json().problem).toMatchObject({ seq: rotatedEvent!.seq, kind: 'deleted' });
    expect(afterDelete.json().problem.message).toContain(`#${rotatedEvent!.seq}`);
    expect(untouched.code, untouched.stdout + untouched.stderr).toBe(0);
    expect(untouched.stdout).toMatch(/intact/);
  });
});
