import { chmodSync, mkdtempSync, rmSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandConnector, ConnectorError, type ConnectorContext } from '../../src/rotation/connectors/index.js';
import { createProgramRegistry, type ProgramConfig } from '../../src/outbound/index.js';
import { adminContext, connectorError } from '../support/rotation.js';
import { writeProgram } from '../support/programs.js';

const ADMIN = 'adm_super_secret_token_0123456789';
let dir: string;

const registered: ProgramConfig[] = [];

/** Writes a node program into the temp dir and registers it (any extra argument allowed); returns its name. */
function script(name: string, body: string): string {
  registered.push(writeProgram(dir, name, body, { allowArgs: ['.*'] }));
  return name;
}

function ctx(settings: Record<string, unknown>, runId = 'rot_test1'): ConnectorContext {
  return adminContext(runId, settings, ADMIN);
}

const caught = connectorError;

/** The connector with every program registered so far. */
const connector = {
  get current() {
    return new CommandConnector({ programs: createProgramRegistry(registered) });
  },
  validateSettings: (settings: unknown) => connector.current.validateSettings(settings),
  create: (c: ConnectorContext) => connector.current.create(c),
  set: (c: ConnectorContext, credential: Parameters<CommandConnector['set']>[1]) => connector.current.set(c, credential),
  test: (c: ConnectorContext, credential: Parameters<CommandConnector['test']>[1]) => connector.current.test(c, credential),
  revoke: (c: ConnectorContext, old: Parameters<CommandConnector['revoke']>[1]) => connector.current.revoke(c, old),
};

/** Alive and not a zombie (an orphan's zombie waits for a PID 1 that may never reap it). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'keysmith-command-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('command connector: settings', () => {
  beforeAll(() => {
    registered.push(writeProgram(dir, 'vendor-cli', 'process.exit(0)', { args: ['--fixed'], allowArgs: ['--region=[a-z]{2}'] }));
  });

  it('accepts a registered program with allowed args, a timeout, secrets, env and config', () => {
    expect(connector.validateSettings({ program: 'vendor-cli', args: ['--region=eu'], timeout: '5s', secrets: { admin: 'a/b' }, env: { VENDOR_REGION: 'eu' }, config: {} })).toEqual([]);
  });

  it('names each problem', () => {
    expect(connector.validateSettings({ args: [1], timeout: 'soon', extra: true })).toEqual([
      'args must be a list of strings',
      'program must name a program registered in the server configuration',
      'timeout must be a duration such as 30s or 5m',
      'extra is not a command connector setting',
    ]);
    expect(connector.validateSettings(null)).toEqual(['settings must be an object']);
  });

  it('refuses a path or a shell, an unregistered program and arguments the registry does not allow', () => {
    expect(connector.validateSettings({ command: '/bin/sh', args: ['-c', 'id'] })).toEqual([
      'command is not allowed: name a program registered in the server configuration with program',
      'program must name a program registered in the server configuration',
    ]);
    expect(connector.validateSettings({ program: '/bin/sh' })[0]).toMatch(/^program "\/bin\/sh" is not registered/);
    expect(connector.validateSettings({ program: 'vendor-cli', args: ['--region=eu; id', '--debug'] })).toEqual([
      'args.0 is not allowed for program "vendor-cli"',
      'args.1 is not allowed for program "vendor-cli"',
    ]);
    expect(new CommandConnector({ programs: createProgramRegistry([]) }).validateSettings({ program: 'vendor-cli' })).toEqual([
      'program "vendor-cli" cannot run: no program is registered in the server configuration',
    ]);
  });

  it('refuses environment variables that change what code the program loads', () => {
    const problems = connector.validateSettings({ program: 'vendor-cli', env: { LD_PRELOAD: '/tmp/x.so', PATH: '/tmp', NODE_OPTIONS: '--require /tmp/x', BASH_ENV: '/tmp/x', KEYSMITH_STEP: 'x', 'A-B': 'x' } });
    expect(problems).toEqual(['LD_PRELOAD', 'PATH', 'NODE_OPTIONS', 'BASH_ENV', 'KEYSMITH_STEP', 'A-B'].map((name) => `env.${name} may not be set by a policy`));
  });

  it('checks shapes only without a registry (the CLI, away from a server)', () => {
    expect(new CommandConnector().validateSettings({ program: 'anything', args: ['x'] })).toEqual([]);
  });
});

describe('command connector: steps', () => {
  let echo: string;
  beforeAll(() => {
    // Answers each step from its input; records what it was given.
    echo = script(
      'echo.mjs',
      `import { readFileSync, appendFileSync } from 'node:fs';
       const input = JSON.parse(readFileSync(0, 'utf8'));
       appendFileSync(process.argv[2], JSON.stringify({ input, env: { step: process.env.KEYSMITH_STEP, home: process.env.HOME ?? null, secretEnv: process.env.KEYSMITH_TEST_LEAK ?? null } }) + '\\n');
       const out = { evidence: { step: input.step, runId: input.runId, region: input.settings.region ?? null } };
       if (input.step === 'create') out.credential = { value: 'new-key-for-' + input.runId, vendorId: 'vk_' + input.runId };
       if (input.step === 'test') out.ok = input.credential.value.startsWith('new-key');
       process.stdout.write(JSON.stringify(out));`,
    );
  });

  it('runs create, set, test and revoke, handing each step its input', async () => {
    const log = join(dir, 'calls.log');
    process.env.KEYSMITH_TEST_LEAK = 'should-not-pass';
    const settings = { program: echo, args: [log], secrets: { admin: 'vendors/acme/admin' }, config: { region: 'eu' } };
    const made = await connector.create(ctx(settings));
    expect(made.credential).toEqual({ value: 'new-key-for-rot_test1', vendorId: 'vk_rot_test1' });
    expect(made.evidence).toEqual({ step: 'create', runId: 'rot_test1', region: 'eu' });
    expect(await connector.set(ctx(settings), made.credential)).toMatchObject({ step: 'set' });
    expect(await connector.test(ctx(settings), made.credential)).toEqual({ ok: true, evidence: { step: 'test', runId: 'rot_test1', region: 'eu' } });
    expect((await connector.test(ctx(settings), { value: 'old' })).ok).toBe(false);
    expect(await connector.revoke(ctx(settings), { vendorId: 'vk_old' })).toMatchObject({ step: 'revoke' });

    const calls = readFileSync(log, 'utf8').trim().split('\n').map((line) => JSON.parse(line));
    expect(calls.map((c) => c.input.step)).toEqual(['create', 'set', 'test', 'test', 'revoke']);
    expect(calls[0].input).toEqual({ step: 'create', runId: 'rot_test1', settings: { region: 'eu' }, secrets: { admin: ADMIN } });
    expect(calls[1].input.credential).toEqual(made.credential);
    expect(calls[4].input.credential).toEqual({ vendorId: 'vk_old' });
    expect(calls[0].env).toEqual({ step: 'create', home: null, secretEnv: null });
    delete process.env.KEYSMITH_TEST_LEAK;
  });

  it('reports a failing exit with the step and the tail of stderr, not retryable', async () => {
    const fail = script('fail.mjs', `process.stderr.write('vendor said no: quota exceeded'); process.exit(3);`);
    const error = await caught(connector.create(ctx({ program: fail })));
    expect(error.code).toBe('ERR_CONNECTOR_FAILED');
    expect(error.step).toBe('create');
    expect(error.retryable).toBe(false);
    expect(error.message).toContain('exited with status 3');
    expect(error.message).toContain('vendor said no: quota exceeded');
  });

  it('marks exit status 75 (EX_TEMPFAIL) retryable', async () => {
    const temp = script('temp.mjs', `process.stderr.write('try later'); process.exit(75);`);
    const error = await caught(connector.revoke(ctx({ program: temp }), { vendorId: 'x' }));
    expect(error).toMatchObject({ code: 'ERR_CONNECTOR_FAILED', step: 'revoke', retryable: true });
  });

  it('refuses an answer that is not one JSON object', async () => {
    const bad = script('bad.mjs', `process.stdout.write('created! {oops');`);
    const error = await caught(connector.create(ctx({ program: bad })));
    expect(error).toMatchObject({ code: 'ERR_CONNECTOR_BAD_RESPONSE', step: 'create', retryable: false });
    const array = script('array.mjs', `process.stdout.write('[1]');`);
    expect((await caught(connector.set(ctx({ program: array }), { value: 'abcd' }))).code).toBe('ERR_CONNECTOR_BAD_RESPONSE');
    const noValue = script('novalue.mjs', `process.stdout.write('{"credential":{}}');`);
    expect((await caught(connector.create(ctx({ program: noValue })))).message).toContain('credential.value');
    const noOk = script('nook.mjs', `process.stdout.write('{}');`);
    expect((await caught(connector.test(ctx({ program: noOk }), { value: 'abcd' }))).message).toContain('ok: true|false');
  });

  it('kills the whole process group on timeout', async () => {
    const pidFile = join(dir, 'grandchild.pid');
    // The program starts a grandchild that would outlive it, then hangs.
    const hang = script(
      'hang.mjs',
      `import { spawn } from 'node:child_process';
       import { writeFileSync } from 'node:fs';
       const g = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
       writeFileSync(${JSON.stringify(pidFile)}, String(g.pid));
       process.stderr.write('waiting for the vendor');
       setInterval(() => {}, 1000);`,
    );
    const started = Date.now();
    const error = await caught(connector.create(ctx({ program: hang, timeout: '1s' })));
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(error).toMatchObject({ code: 'ERR_CONNECTOR_TIMEOUT', step: 'create', retryable: true });
    expect(error.message).toContain('waiting for the vendor');
    expect(existsSync(pidFile)).toBe(true);
    const grandchild = Number(readFileSync(pidFile, 'utf8'));
    await new Promise((r) => setTimeout(r, 200));
    expect(isRunning(grandchild)).toBe(false);
  });

  it('gives up on a program whose escaped descendant keeps standard output open', async () => {
    const pidFile = join(dir, 'escaped.pid');
    // setsid: the descendant leaves the process group, so the group kill cannot reach it.
    const escape = script(
      'escape.mjs',
      `import { spawn } from 'node:child_process';
       import { writeFileSync } from 'node:fs';
       const g = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: ['ignore', 'inherit', 'inherit'], detached: true });
       writeFileSync(${JSON.stringify(pidFile)}, String(g.pid));
       setInterval(() => {}, 1000);`,
    );
    try {
      const started = Date.now();
      const error = await caught(connector.create(ctx({ program: escape, timeout: '1s' })));
      expect(error.code).toBe('ERR_CONNECTOR_TIMEOUT');
      expect(Date.now() - started).toBeLessThan(8_000);
    } finally {
      if (existsSync(pidFile)) process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
    }
  });

  it('stops a step when the run is cancelled', async () => {
    const hang = script('hang2.mjs', `setInterval(() => {}, 1000);`);
    const controller = new AbortController();
    const pending = caught(connector.test({ ...ctx({ program: hang }), signal: controller.signal }, { value: 'abcd' }));
    setTimeout(() => controller.abort(), 100);
    expect(await pending).toMatchObject({ code: 'ERR_CONNECTOR_FAILED', retryable: true });
  });

  it('scrubs the credential and the admin secret from stderr and evidence', async () => {
    const leaky = script(
      'leaky.mjs',
      `import { readFileSync } from 'node:fs';
       const input = JSON.parse(readFileSync(0, 'utf8'));
       if (input.step === 'test') {
         process.stdout.write(JSON.stringify({ ok: true, evidence: { echoed: 'key=' + input.credential.value.password, nested: { x: 1 } } }));
       } else {
         process.stderr.write('auth with ' + input.secrets.admin + ' failed for ' + JSON.stringify(input.credential));
         process.exit(1);
       }`,
    );
    const settings = { program: leaky, secrets: { admin: 'vendors/acme/admin' } };
    const credential = { value: { username: 'app_a', password: 'pw-Very-Secret-42' } };
    const error = await caught(connector.set(ctx(settings), credential));
    expect(error.message).not.toContain(ADMIN);
    expect(error.message).not.toContain('pw-Very-Secret-42');
    expect(error.message).toContain('[redacted]');
    const tested = await connector.test(ctx(settings), credential);
    expect(tested.evidence).toEqual({ echoed: 'key=[redacted]' });
  });

  it('passes args to the program as they are, without a shell', async () => {
    const argv = script('argv.mjs', `process.stdout.write(JSON.stringify({ ok: true, evidence: { args: JSON.stringify(process.argv.slice(2)) } }));`);
    const marker = join(dir, 'pwned');
    const tricky = ['$(touch ' + marker + ')', '; touch ' + marker, '`id`', '*', '$HOME'];
    const tested = await connector.test(ctx({ program: argv, args: [...tricky] }), { value: 'abcd' });
    expect(JSON.parse(tested.evidence.args as string)).toEqual(tricky);
    expect(existsSync(marker)).toBe(false);
  });

  it('says clearly when the program cannot be started', async () => {
    const name = script('not-executable.mjs', 'process.exit(0)');
    chmodSync(join(dir, name), 0o600);
    const error = await caught(connector.create(ctx({ program: name })));
    expect(error).toMatchObject({ code: 'ERR_CONNECTOR_FAILED', retryable: false });
    expect(error.message).toContain('EACCES');
  });

  it('refuses invalid settings before spawning anything', async () => {
    const error = await caught(connector.create(ctx({ program: '' })));
    expect(error.code).toBe('ERR_CONNECTOR_SETTINGS_INVALID');
  });

  it('refuses a program that is not registered, before reading any secret', async () => {
    const reads: string[] = [];
    const context = { ...ctx({ program: 'nope', secrets: { admin: 'vendors/acme/admin' } }), readSecret: async (path: string) => (reads.push(path), ADMIN) };
    const error = await caught(connector.create(context));
    expect(error.code).toBe('ERR_CONNECTOR_SETTINGS_INVALID');
    expect(reads).toEqual([]);
  });

  it('never starts a program whose file changed since it was registered', async () => {
    const marker = join(dir, 'swapped-ran');
    const name = script('swap.mjs', `process.stdout.write('{"ok":true}')`);
    const reads: string[] = [];
    const context = { ...ctx({ program: name, secrets: { admin: 'vendors/acme/admin' } }), readSecret: async (path: string) => (reads.push(path), ADMIN) };
    expect((await connector.test(context, { value: 'abcd' })).ok).toBe(true);
    writeFileSync(join(dir, name), `#!${process.execPath}\nrequire('node:fs').writeFileSync(${JSON.stringify(marker)}, 'ran');`);
    reads.length = 0;
    const error = await caught(connector.test(context, { value: 'abcd' }));
    expect(error).toMatchObject({ code: 'ERR_CONNECTOR_PROGRAM_REFUSED', step: 'test', retryable: false });
    expect(error.message).toContain('no longer has its registered SHA-256');
    expect(existsSync(marker)).toBe(false);
    expect(reads).toEqual([]);
  });
});
