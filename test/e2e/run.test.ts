/** `keysmith run`: secrets in a child's environment, masked in its output, its exit status passed on. */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { BIN, ensureBuilt, makeTempDir, removeTempDirs, startServer, stopAll, type TestServer } from './support.js';

let server: TestServer;
const NODE = process.execPath;

beforeAll(async () => {
  ensureBuilt();
  server = await startServer(join(makeTempDir('run'), 'data'));
  const puts = await Promise.all([
    server.cli(['secrets', 'put', 'e2e/run/token'], { input: 'tok-run-123456\n' }),
    server.cli(['secrets', 'put', 'e2e/run/db', '--json-value'], { input: '{"user":"app","password":"db-pass-7777","port":5432}' }),
    server.cli(['secrets', 'put', 'e2e/run/rotating'], { input: 'rot-one-1111' }),
  ]);
  for (const put of puts) if (put.code !== 0) throw new Error(put.stderr);
  const pending = await server.cli(['secrets', 'put', 'e2e/run/rotating', '--stage', 'pending'], { input: 'rot-two-2222' });
  if (pending.code !== 0) throw new Error(pending.stderr);
});

afterAll(async () => {
  await stopAll();
  removeTempDirs();
});

describe.concurrent('keysmith run', { timeout: 120_000 }, () => {
  it('gives the child the secret and masks it in what the child prints, exit 0', async ({ expect }) => {
    const ran = await server.cli(['run', '--secret', 'X=e2e/run/token', '--', NODE, '-e', 'console.log(process.env.X); console.error("err:" + process.env.X)']);
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stdout).toBe('***\n');
    expect(ran.stderr).toBe('err:***\n');
  });

  it('gives the child exactly the value: its length proves it arrived whole', async ({ expect }) => {
    const ran = await server.cli(['run', '--secret', 'X=e2e/run/token', '--', NODE, '-e', 'console.log(process.env.X.length, process.env.X === "tok-run-123456")']);
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stdout).toBe('14 true\n');
  });

  it('passes the child exit code on', async ({ expect }) => {
    const ran = await server.cli(['run', '--secret', 'X=e2e/run/token', '--', NODE, '-e', 'process.exit(3)']);
    expect(ran.code).toBe(3);
  });

  it('exits 128 + the signal number when a signal ends the child', async ({ expect }) => {
    const ran = await server.cli(['run', '--secret', 'X=e2e/run/token', '--', NODE, '-e', 'process.kill(process.pid, "SIGKILL")']);
    expect(ran.code).toBe(137);
  });

  it('passes SIGTERM on to the child and exits with its status', async ({ expect }) => {
    const child = spawn(NODE, [BIN, 'run', '--secret', 'X=e2e/run/token', '--', NODE, '-e', 'process.on("SIGTERM", () => { console.log("got SIGTERM " + process.env.X); process.exit(7); }); setInterval(() => {}, 1000); console.log("ready");'], {
      env: { ...process.env, ...server.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    let stdout = '';
    let sent = false;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      if (!sent && stdout.includes('ready')) sent = child.kill('SIGTERM');
    });
    const [code] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('close', (c, s) => resolve([c, s])));
    clearTimeout(timer);
    expect(stdout).toBe('ready\ngot SIGTERM ***\n');
    expect(code).toBe(7);
  });

  it('masks a value the child writes in pieces', async ({ expect }) => {
    const script = 'const v = process.env.X; process.stdout.write("a" + v.slice(0, 5)); setTimeout(() => process.stdout.write(v.slice(5) + "b\\n"), 100);';
    const ran = await server.cli(['run', '--secret', 'X=e2e/run/token', '--', NODE, '-e', script]);
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stdout).toBe('a***b\n');
  });

  it('picks a field of a JSON object with #field, a stage with @stage, a version with @N', async ({ expect }) => {
    const ran = await server.cli([
      'run',
      '--secret', 'PW=e2e/run/db#password',
      '--secret', 'PORT=e2e/run/db#port',
      '--secret', 'NEXT=e2e/run/rotating@pending',
      '--secret', 'FIRST=e2e/run/rotating@1',
      '--',
      NODE, '-e', 'const e = process.env; console.log([e.PW === "db-pass-7777", e.PORT, e.NEXT === "rot-two-2222", e.FIRST === "rot-one-1111"].join(" "))',
    ]);
    expect(ran.code, ran.stderr).toBe(0);
    // 5432 is itself a value of length 4, so it is masked too.
    expect(ran.stdout).toBe('true *** true true\n');
  });

  it('refuses a JSON object without #field with exit 1 and starts nothing', async ({ expect }) => {
    const marker = join(makeTempDir('run-marker'), 'started');
    const ran = await server.cli(['run', '--secret', 'DB=e2e/run/db', '--', NODE, '-e', `require("fs").writeFileSync(${JSON.stringify(marker)}, "x")`]);
    expect(ran.code).toBe(1);
    expect(ran.stderr).toMatch(/DB=e2e\/run\/db#FIELD/);
    expect(existsSync(marker)).toBe(false);
  });

  it('fails with exit 1 and a clear message, starting nothing, when a secret cannot be read', async ({ expect }) => {
    const marker = join(makeTempDir('run-marker'), 'started');
    const ran = await server.cli(['run', '--secret', 'OK=e2e/run/token', '--secret', 'MISSING=e2e/run/nope', '--json', '--', NODE, '-e', `require("fs").writeFileSync(${JSON.stringify(marker)}, "x")`]);
    expect(ran.code).toBe(1);
    expect(ran.errorJson().error).toMatchObject({ code: 'ERR_SECRET_NOT_FOUND' });
    expect(ran.errorJson().error.message).toMatch(/e2e\/run\/nope.*MISSING/);
    expect(existsSync(marker)).toBe(false);
  });

  it('is a usage error (2) without a command after --, with a bad variable name, or without --', async ({ expect }) => {
    const [noCommand, badName, noDashes] = await Promise.all([
      server.cli(['run', '--secret', 'X=e2e/run/token', '--']),
      server.cli(['run', '--secret', 'BAD-NAME=e2e/run/token', '--', NODE, '-e', '']),
      server.cli(['run', '--secret', 'X=e2e/run/token', 'echo', 'hi']),
    ]);
    expect(noCommand.code).toBe(2);
    expect(noCommand.stderr).toMatch(/no command/);
    expect(badName.code).toBe(2);
    expect(noDashes.code).toBe(2);
    expect(noDashes.stderr).toMatch(/after "--"/);
  });

  it('exits 127 when the command does not exist', async ({ expect }) => {
    const ran = await server.cli(['run', '--secret', 'X=e2e/run/token', '--', 'keysmith-no-such-command-xyz']);
    expect(ran.code).toBe(127);
    expect(ran.stderr).toMatch(/command not found/);
  });

  it('leaves --json after -- to the child', async ({ expect }) => {
    const ran = await server.cli(['run', '--secret', 'X=e2e/run/token', '--', NODE, '-e', 'console.log(process.argv.slice(1).join(","))', '--', '--json', '--help']);
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stdout).toBe('--json,--help\n');
  });
});
