/**
 * The audit trail through the built CLI: events for every action and never a key in them, the
 * chain verified through the API, and offline verification naming the event that was edited or
 * deleted directly in the SQLite file.
 */
import { cpSync, existsSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
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

  it('prints the checkpoint key and signs a checkpoint through the API, which then holds the log to it', async () => {
    const key = await server.cli(['audit', 'key', '--json']);
    expect(key.code, key.stderr).toBe(0);
    expect(key.json()).toMatchObject({ algorithm: 'Ed25519', keyId: expect.stringMatching(/^[0-9a-f]{16}$/) });
    expect(key.json().pem).toContain('BEGIN PUBLIC KEY');
    const out = join(makeTempDir('audit-out'), 'mine.jsonl');
    const signed = await server.cli(['audit', 'checkpoint', '--out', out, '--json']);
    expect(signed.code, signed.stderr).toBe(0);
    expect(signed.json().checkpoint).toMatchObject({ keyId: key.json().keyId });
    expect(signed.json().sinks).toEqual([join(dataDir, 'audit-checkpoints.jsonl'), out]);
    expect(statSync(out).mode & 0o777).toBe(0o600);
    expect(readFileSync(out, 'utf8')).toBe(`${signed.json().line}\n`);
    const text = await server.cli(['audit', 'key']);
    expect(text.stdout).toContain(key.json().fingerprint);
    const verified = await server.cli(['audit', 'verify', '--checkpoints', out, '--json']);
    expect(verified.code, verified.stdout).toBe(0);
    expect(verified.json().checkpoints).toBeGreaterThanOrEqual(2);
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

  it('offline: catches a truncated log by the checkpoint the server wrote at shutdown, and exits 1', async () => {
    const file = join(dataDir, 'audit-checkpoints.jsonl');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { seq: number; keyId: string });
    const db = new Database(join(dataDir, 'keysmith.db'), { readonly: true });
    const last = db.prepare('select max(seq) as seq from audit_events').get() as { seq: number };
    db.close();
    // The shutdown checkpoint names the last event.
    expect(lines.at(-1)!.seq).toBe(last.seq);

    const copy = join(makeTempDir('audit-truncated'), 'data');
    cpSync(dataDir, copy, { recursive: true });
    const cut = new Database(join(copy, 'keysmith.db'));
    cut.prepare('delete from audit_events where seq > ?').run(last.seq - 2);
    const kept = cut.prepare('select seq, hash from audit_events where seq = ?').get(last.seq - 2) as { seq: number; hash: string };
    cut.prepare('update audit_head set seq = ?, hash = ? where id = 1').run(kept.seq, kept.hash);
    cut.close();
    const truncated = await runCli(['audit', 'verify', '--data', copy, '--json']);
    expect(truncated.code, truncated.stderr).toBe(1);
    expect(truncated.json().problem).toMatchObject({ kind: 'truncated', seq: last.seq - 1, checkpoint: { source: join(copy, 'audit-checkpoints.jsonl') } });

    // The same copy with its checkpoints file gone is consistent: a checkpoint kept elsewhere still catches it.
    const elsewhere = join(makeTempDir('audit-elsewhere'), 'checkpoints.jsonl');
    cpSync(file, elsewhere);
    rmSync(join(copy, 'audit-checkpoints.jsonl'));
    expect((await runCli(['audit', 'verify', '--data', copy])).code).toBe(0);
    const withoutFile = await runCli(['audit', 'verify', '--data', copy, '--checkpoints', elsewhere]);
    expect(withoutFile.code).toBe(1);
    expect(withoutFile.stdout).toMatch(/BROKEN.*truncated/);
  });

  it('offline: empties the log and resets the head; verify exits 1', async () => {
    const copy = join(makeTempDir('audit-emptied'), 'data');
    cpSync(dataDir, copy, { recursive: true });
    const db = new Database(join(copy, 'keysmith.db'));
    db.prepare('delete from audit_events').run();
    db.prepare('update audit_head set seq = 0, hash = ? where id = 1').run('0'.repeat(64));
    db.close();
    const [withCheckpoints, alone] = await Promise.all([
      runCli(['audit', 'verify', '--data', copy, '--json']),
      runCli(['audit', 'verify', '--data', copy, '--checkpoints', join(makeTempDir('audit-none'), 'empty.jsonl')]),
    ]);
    expect(withCheckpoints.code).toBe(1);
    expect(withCheckpoints.json().problem).toMatchObject({ kind: 'truncated', seq: 1 });
    // A --checkpoints file that does not exist is bad usage.
    expect(alone.code).toBe(2);
  });

  it('offline: --checkpoints naming a directory is bad usage, a file of junk names its first bad line', async () => {
    const dir = makeTempDir('audit-checkpoints-dir');
    const junk = join(dir, 'junk.jsonl');
    writeFileSync(junk, `\n${'['.repeat(100_000)}\n{"v":1,"seq":1e400}\n\u0000\n`);
    const [directory, lines] = await Promise.all([
      runCli(['audit', 'verify', '--data', dataDir, '--checkpoints', dir]),
      runCli(['audit', 'verify', '--data', dataDir, '--checkpoints', junk, '--json']),
    ]);
    expect(directory.code).toBe(2);
    expect(directory.stderr).toContain(`--checkpoints ${dir} is not a file`);
    expect(directory.stderr).not.toContain('EISDIR');
    expect(lines.code).toBe(1);
    expect(lines.json().problem).toMatchObject({ kind: 'bad-checkpoint', checkpoint: { source: junk, line: 2 } });
  });

  it('offline: a deleted head row, a deleted first event and an empty log each exit 1 (with no checkpoints to help)', async () => {
    const root = makeTempDir('audit-naive');
    const tamper = (name: string, statements: string[]) => {
      const copy = join(root, name);
      cpSync(dataDir, copy, { recursive: true });
      rmSync(join(copy, 'audit-checkpoints.jsonl'));
      const db = new Database(join(copy, 'keysmith.db'));
      for (const statement of statements) db.prepare(statement).run();
      db.close();
      return copy;
    };
    const cases = [
      { dir: tamper('no-head', ['delete from audit_head']), kind: 'missing-head' },
      { dir: tamper('no-first', ['delete from audit_events where seq = 1']), kind: 'deleted' },
      { dir: tamper('empty', ['delete from audit_events']), kind: 'empty' },
    ];
    const results = await Promise.all(cases.map((c) => runCli(['audit', 'verify', '--data', c.dir, '--json'])));
    results.forEach((result, i) => {
      expect(result.code, result.stdout + result.stderr).toBe(1);
      expect(result.json()).toMatchObject({ ok: false, problem: { kind: cases[i]!.kind } });
    });
  });

  it('offline: a directory with no database is named, and nothing is created in it', async () => {
    const empty = makeTempDir('audit-nodb');
    const result = await runCli(['audit', 'verify', '--data', empty]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('holds no Keysmith database');
    expect(readdirSync(empty)).toEqual([]);
    const missing = join(empty, 'nope');
    expect((await runCli(['audit', 'checkpoint', '--data', missing])).code).toBe(2);
    expect(existsSync(missing)).toBe(false);
  });

  it('offline: prints the same key as the server and writes a checkpoint on demand', async () => {
    const key = await runCli(['audit', 'key', '--data', dataDir, '--json']);
    expect(key.code, key.stderr).toBe(0);
    const lines = readFileSync(join(dataDir, 'audit-checkpoints.jsonl'), 'utf8').trim().split('\n');
    expect(JSON.parse(lines[0]!).keyId).toBe(key.json().keyId);
    const out = join(makeTempDir('audit-offline-out'), 'cp.jsonl');
    const written = await runCli(['audit', 'checkpoint', '--data', dataDir, '--out', out, '--json']);
    expect(written.code, written.stderr).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe(`${written.json().line}\n`);
    const verified = await runCli(['audit', 'verify', '--data', dataDir, '--checkpoints', out]);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
  });
});
