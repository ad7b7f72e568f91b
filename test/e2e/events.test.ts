/**
 * `keysmith events` against a real server: JSON lines replayed from the log and followed live,
 * readable lines for people, `--count` to stop, and refusals mapped to exit codes.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ISSUED_KEY_RE, ensureBuilt, makeTempDir, removeTempDirs, startServer, stopAll, type TestServer } from './support.js';

interface StreamEvent {
  seq: number;
  time: string;
  action: string;
  target: string | null;
  actor: string;
  data: Record<string, unknown>;
}

let server: TestServer;
let keyId: string;
const issued: string[] = [];

const lines = (text: string) => text.split('\n').filter((line) => line !== '');

beforeAll(async () => {
  ensureBuilt();
  server = await startServer(join(makeTempDir('events'), 'data'));
  issued.push(server.rootToken);
  const created = await server.cli(['keys', 'create', '--owner', 'team-events', '--json']);
  if (created.code !== 0) throw new Error(`setup failed:\n${created.stderr}`);
  keyId = created.json().id;
  issued.push(created.json().key);
}, 60_000);

afterAll(async () => {
  await stopAll();
  removeTempDirs();
});

describe('keysmith events', () => {
  it('replays from --since and stops after --count events, one JSON line each', async () => {
    const res = await server.cli(['events', '--types', 'key', '--since', '0', '--count', '1', '--json']);
    expect(res.code, res.stderr).toBe(0);
    const [line, ...rest] = lines(res.stdout);
    expect(rest).toEqual([]);
    const event = JSON.parse(line!) as StreamEvent;
    expect(event).toMatchObject({ action: 'key.issued', target: keyId, seq: expect.any(Number), time: expect.any(String), actor: expect.any(String) });
    expect(Object.keys(event).sort()).toEqual(['action', 'actor', 'data', 'seq', 'target', 'time']);
  });

  it('follows changes live, in order, and prints no key', async () => {
    const audit = await server.cli(['audit', 'list', '--all', '--json']);
    const head = Math.max(...(audit.json().data as StreamEvent[]).map((event) => event.seq));
    const following = server.cli(['events', '--types', 'key', '--since', String(head), '--count', '3', '--json']);
    const rotated = await server.cli(['keys', 'rotate', keyId, '--overlap', '1h', '--json']);
    expect(rotated.code, rotated.stderr).toBe(0);
    issued.push(rotated.json().key);
    const successor = rotated.json().id as string;
    expect((await server.cli(['keys', 'revoke', successor, '--reason', 'events e2e'])).code).toBe(0);
    const res = await following;
    expect(res.code, res.stderr).toBe(0);
    const events = lines(res.stdout).map((line) => JSON.parse(line) as StreamEvent);
    expect(events.map((event) => [event.action, event.target])).toEqual([
      ['key.rotated', keyId],
      ['key.issued', successor],
      ['key.revoked', successor],
    ]);
    expect(events.map((event) => event.seq)).toEqual([head + 1, head + 2, head + 3]);
    for (const value of issued) expect(res.stdout).not.toContain(value);
    expect(res.stdout).not.toMatch(ISSUED_KEY_RE);
  });

  it('prints a readable line per event without --json', async () => {
    const res = await server.cli(['events', '--types', 'key', '--target', keyId, '--since', '0', '--count', '2']);
    expect(res.code, res.stderr).toBe(0);
    const printed = lines(res.stdout);
    expect(printed).toHaveLength(2);
    expect(printed[0]).toMatch(new RegExp(`^#\\d+ \\S+Z key\\.issued ${keyId} by \\S+`));
    expect(printed[1]).toMatch(new RegExp(`^#\\d+ \\S+Z key\\.rotated ${keyId} by \\S+ successor=key_\\w+ overlap=1h`));
  });

  it('exits 2 on an unknown type and 1 for a token without events:read', async () => {
    const bad = await server.cli(['events', '--types', 'key,bogus', '--json']);
    expect(bad.code).toBe(2);
    expect(bad.errorJson().error).toMatchObject({ code: 'ERR_INVALID_REQUEST', status: 400 });
    expect(bad.errorJson().error.message).toContain('bogus');
    const token = await server.cli(['tokens', 'create', '--scope', 'audit:read', '--json']);
    expect(token.code, token.stderr).toBe(0);
    const denied = await server.cli(['events', '--json'], { env: { KEYSMITH_TOKEN: token.json().key } });
    expect(denied.code).toBe(1);
    expect(denied.errorJson().error).toMatchObject({ code: 'ERR_FORBIDDEN', status: 403 });
    const usage = await server.cli(['events', '--count', '0']);
    expect(usage.code).toBe(2);
  });

  it('runs until Ctrl-C and then exits 0', async () => {
    const audit = await server.cli(['audit', 'list', '--all', '--json']);
    const head = Math.max(...(audit.json().data as StreamEvent[]).map((event) => event.seq));
    // From the current end of the log, so the change below is seen however slowly the CLI starts.
    const child = spawn(process.execPath, [BIN, 'events', '--json', '--since', String(head)], { env: { ...process.env, ...server.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await delay(300);
    // Still following: a change shows up as a line.
    const created = await server.cli(['keys', 'create', '--owner', 'team-events-sigint', '--json']);
    issued.push(created.json().key);
    for (let i = 0; i < 50 && !stdout.includes(created.json().id as string); i++) await delay(100);
    expect(stdout).toContain(created.json().id);
    expect(child.exitCode).toBeNull();
    child.kill('SIGINT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    expect(await exited).toBe(0);
    clearTimeout(timer);
  });
});
