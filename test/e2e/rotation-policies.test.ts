/** The built CLI planning and applying a rotation policy file against a real server, as terraform plan/apply. */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, ensureBuilt, makeTempDir, removeTempDirs, runCli, startServer, stopAll, type TestServer } from './support.js';

let server: TestServer;
let files: string;

beforeAll(async () => {
  ensureBuilt();
  const dataDir = join(makeTempDir('rotation'), 'data');
  // The hosts the example policies call must be in the operator's egress allowlist, or apply is refused.
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const allow = ['api.stripe.example:443', 'deploy.internal:443', 'payments.internal:443', 'api.example.com:443'];
  writeFileSync(join(dataDir, 'keysmith.yaml'), `egress:\n  allow:\n${allow.map((rule) => `    - ${rule}\n`).join('')}`, { mode: 0o600 });
  server = await startServer(dataDir);
  files = makeTempDir('rotation-files');
});

afterAll(async () => {
  await stopAll();
  removeTempDirs();
});

function policyFile(name: string, body: string): string {
  const file = join(files, name);
  writeFileSync(file, body);
  return file;
}

/** The example in the docs: payments-keys (every 30d), then stripe (a cron on a secret). */
const EXAMPLE = readFileSync(join(ROOT, 'docs', 'rotation.example.yaml'), 'utf8');
const KEYS_ONLY = EXAMPLE.slice(0, EXAMPLE.indexOf('  - name: stripe'));

describe('rotation plan and apply', { timeout: 120_000 }, () => {
  it('plans, applies, plans nothing more, then updates and prunes only with --prune', async () => {
    const first = policyFile('first.yaml', EXAMPLE);
    const plan = await server.cli(['rotation', 'plan', '-f', first]);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toContain(`Plan for ${first}: 2 to create, 0 to update, 0 not in the file, 0 unchanged.`);
    expect(plan.stdout).toMatch(/^\+ payments-keys$/m);
    expect(plan.stdout).toMatch(/^\+ stripe$/m);
    // A plan changes nothing.
    expect((await server.cli(['rotation', 'policies', '--json'])).json().data).toEqual([]);

    const apply = await server.cli(['rotation', 'apply', '-f', first, '--json']);
    expect(apply.code, apply.stderr).toBe(0);
    expect(apply.json()).toEqual({ file: first, create: ['payments-keys', 'stripe'], update: [], delete: [], unchanged: [], leftAlone: [] });
    const again = await server.cli(['rotation', 'plan', '-f', first, '--json']);
    expect(again.json()).toEqual({ file: first, create: [], update: [], delete: [], unchanged: ['payments-keys', 'stripe'] });

    const second = policyFile('second.yaml', KEYS_ONLY.replace('every: 30d', 'every: 60d'));
    const planned = await server.cli(['rotation', 'plan', '-f', second]);
    expect(planned.stdout).toMatch(/^~ payments-keys \(schedule\.every\)$/m);
    expect(planned.stdout).toMatch(/^- stripe \(only with apply --prune\)$/m);
    const kept = await server.cli(['rotation', 'apply', '-f', second]);
    expect(kept.code, kept.stderr).toBe(0);
    expect(kept.stdout).toContain('0 created, 1 updated, 0 deleted, 0 unchanged, 1 left alone');
    expect(kept.stdout).toMatch(/^- stripe \(left alone; apply --prune deletes it\)$/m);
    const listed = (await server.cli(['rotation', 'policies', '--json'])).json().data as Array<{ name: string; version: number }>;
    expect(listed.map((record) => [record.name, record.version])).toEqual([['payments-keys', 2], ['stripe', 1]]);

    const pruned = await server.cli(['rotation', 'apply', '-f', second, '--prune', '--json']);
    expect(pruned.code, pruned.stderr).toBe(0);
    expect(pruned.json()).toMatchObject({ delete: ['stripe'], unchanged: ['payments-keys'], leftAlone: [] });
    const table = await server.cli(['rotation', 'policies']);
    expect(table.stdout).toMatch(/^payments-keys\s+2\s+keys owner=team-payments,tier=gold\s+every 60d\s+24h\s+keysmith-key\s+yes/m);
    expect(table.stdout).not.toContain('stripe');
  });

  it('prints every problem of a bad file as FILE:LINE:COL and exits 2, touching nothing', async () => {
    const bad = policyFile('bad.yaml', EXAMPLE.replace('every: 30d', 'every: 30m').replace('type: http', 'type: ftp'));
    const before = (await server.cli(['rotation', 'policies', '--json'])).json();
    for (const command of ['plan', 'apply']) {
      const result = await server.cli(['rotation', command, '-f', bad]);
      expect(result.code).toBe(2);
      expect(result.stdout).toBe('');
      expect(result.stderr.trim().split('\n')).toEqual([
        `${bad}:10:7 schedule every 30m is too frequent: rotate at most once every 1h`,
        `${bad}:27:7 unknown connector type; use one of keysmith-key, http, postgres, command`,
      ]);
    }
    const json = await server.cli(['rotation', 'plan', '-f', bad, '--json']);
    expect(json.code).toBe(2);
    expect(json.json()).toEqual({ file: bad, problems: [expect.objectContaining({ line: 10, column: 7 }), expect.objectContaining({ line: 27, column: 7 })] });
    expect((await server.cli(['rotation', 'policies', '--json'])).json()).toEqual(before);
  });

  it('refuses bad usage with exit 2, and a call without a token with exit 1', async () => {
    const missing = await server.cli(['rotation', 'plan']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('-f FILE');
    expect((await server.cli(['rotation', 'plan', '-f', join(files, 'absent.yaml')])).code).toBe(2);
    const good = policyFile('good.yaml', KEYS_ONLY);
    const anonymous = await runCli(['rotation', 'plan', '-f', good], { env: { KEYSMITH_ADDR: server.url } });
    expect(anonymous.code).toBe(1);
    expect(anonymous.stderr).toContain('Error:');
  });
});
