/**
 * Issue 9, finding 1, attacked as the reproduction did, on both store dialects: a token holding
 * only rotation:write, rotation:run and rotation:read tries to make the server run a program of
 * its choosing or call an address of its choosing. Programs are the operator's (registered by
 * path and SHA-256 in the configuration), hosts are the operator's (the egress allowlist): the
 * API can only pick among them, so every attempt below is refused, at put time where the input
 * is static, at call time otherwise, and nothing of a swapped program or a refused host leaks.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RotationRunDetailWire } from '../../src/contract/index.js';
import type { Resolver } from '../../src/outbound/index.js';
import { describeEachDialect } from '../support/databases.js';
import { createTestContext, type TestContext } from '../support/context.js';
import { drive } from '../support/rotation.js';
import { writeProgram } from '../support/programs.js';
import { expectProblem, problemFields, unique, useContext } from '../http/helpers.js';

const ATTACKER_SCOPES = ['rotation:write', 'rotation:run', 'rotation:read'];
const dir = mkdtempSync(join(tmpdir(), 'keysmith-attack-'));
const MASTER_KEY_TEXT = 'TOP-SECRET-MASTER-KEY-c2VjcmV0LW1hc3Rlci1rZXk=';
const MASTER_KEY_FILE = join(dir, 'master.key');
writeFileSync(MASTER_KEY_FILE, `${MASTER_KEY_TEXT}\n`, { mode: 0o600 });

/** The operator's program: answers each step of the connector protocol. */
const VENDOR_CLI = writeProgram(
  dir,
  'vendor-cli.cjs',
  `const input = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));
   const out = { evidence: { step: input.step } };
   if (input.step === 'create') out.credential = { value: 'new-' + input.runId, vendorId: 'v-' + input.runId };
   if (input.step === 'test') out.ok = true;
   process.stdout.write(JSON.stringify(out));`,
  { allowArgs: ['--region=[a-z]{2}'] },
);
const SWAP_MARKER = join(dir, 'swapped-program-ran');
/** What an attacker who can write the program's file (but not the configuration) puts there. */
const SWAPPED = `#!/bin/sh\ntouch ${SWAP_MARKER}\ncat ${MASTER_KEY_FILE} >&2\nexit 1\n`;

/** Counts TCP connections: a refused call must make none. */
async function listener(): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  let count = 0;
  const server: TcpServer = createTcpServer((socket) => {
    count += 1;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, connections: () => count, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** DNS for the attack: every attacker name points at the loopback listener. */
const attackerDns: Resolver = async (host) => {
  if (host.endsWith('.attacker.test')) return [{ address: '127.0.0.1', family: 4 }];
  if (host === 'api.vendor.test') return [{ address: '93.184.216.34', family: 4 }];
  throw Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' });
};

let trap: Awaited<ReturnType<typeof listener>>;
let redirector: Server;
let redirectTarget: Server;
let redirectTargetHits = 0;
let redirectorPort = 0;

beforeAll(async () => {
  trap = await listener();
  redirectTarget = createHttpServer((req, res) => {
    redirectTargetHits += 1;
    res.writeHead(201, { 'content-type': 'application/json' }).end('{"secret":"stolen","id":"x"}');
  });
  await new Promise<void>((resolve) => redirectTarget.listen(0, '127.0.0.1', resolve));
  const targetPort = (redirectTarget.address() as AddressInfo).port;
  redirector = createHttpServer((req, res) => res.writeHead(307, { location: `http://127.0.0.1:${targetPort}/keys` }).end());
  await new Promise<void>((resolve) => redirector.listen(0, '127.0.0.1', resolve));
  redirectorPort = (redirector.address() as AddressInfo).port;
});
afterAll(async () => {
  await trap.close();
  redirector.close();
  redirectTarget.close();
  rmSync(dir, { recursive: true, force: true });
});

function secretPolicy(name: string, extra: Record<string, unknown>): Record<string, unknown> {
  return { name, target: { secret: `apps/${name}` }, schedule: { every: '30d' }, overlap: '1h', ...extra };
}

/** An http connector whose every request goes to `base`. */
function httpTo(base: string): Record<string, unknown> {
  return { type: 'http', settings: { create: { url: `${base}/keys`, key: '$.secret', id: '$.id' }, test: { url: `${base}/me` }, revoke: { url: `${base}/keys/{{vendorId}}` } } };
}

describeEachDialect('policy attacks: programs and egress', (dialect) => {
  // Nothing configured: no program, no host.
  const bare = useContext(dialect);
  // The operator registered one program and listed one public vendor, the attacker's names
  // (which resolve to loopback, and no IP rule lists loopback).
  const configured = useContext(dialect, {
    programs: [VENDOR_CLI],
    egress: { allow: ['api.vendor.test:443', 'vendor.attacker.test:*', 'health.attacker.test:*', 'hook.attacker.test:*'], resolver: attackerDns },
  });
  const withRedirector = useContext(dialect, { egress: { allow: ['127.0.0.1:*'] } });

  async function put(ctx: () => TestContext, policy: Record<string, unknown>) {
    const token = await ctx().token(ATTACKER_SCOPES);
    return ctx().request({ method: 'PUT', url: `/v1/rotation/policies/${policy.name as string}`, body: { policy }, token });
  }

  async function runOf(ctx: () => TestContext, policy: Record<string, unknown>): Promise<RotationRunDetailWire> {
    const put1 = await put(ctx, policy);
    expect(put1.statusCode, put1.body).toBe(201);
    await ctx().secrets.put({ actor: 'prn_admin' }, `apps/${policy.name as string}`, { value: 'current-value-1234' });
    const token = await ctx().token(ATTACKER_SCOPES);
    const started = await ctx().request({ method: 'POST', url: '/v1/rotations', body: { secret: `apps/${policy.name as string}`, reason: 'attack' }, token });
    expect(started.statusCode, started.body).toBe(201);
    const id = (started.json() as { id: string }).id;
    await drive(ctx(), id, { advance: true, until: (run) => run.status !== 'running' });
    const shown = await ctx().request({ method: 'GET', url: `/v1/rotations/${id}`, token });
    expect(shown.statusCode).toBe(200);
    return shown.json() as RotationRunDetailWire;
  }

  describe('programs', () => {
    it('refuses the reproduction: /bin/sh -c "cat DATA/master.key >&2" as a command connector', async () => {
      const shell = { type: 'command', settings: { command: '/bin/sh', args: ['-c', `cat ${MASTER_KEY_FILE} >&2; exit 1`] } };
      for (const ctx of [bare, configured]) {
        const problem = expectProblem(await put(ctx, secretPolicy(unique('sh'), { connector: shell })), 422, 'ERR_ROTATION_POLICY_INVALID');
        expect(problemFields(problem)).toEqual(['policy.connector.settings.command', 'policy.connector.settings.program']);
      }
      const named = expectProblem(await put(configured, secretPolicy(unique('sh'), { connector: { type: 'command', settings: { program: '/bin/sh', args: ['-c', 'id'] } } })), 422, 'ERR_ROTATION_POLICY_INVALID');
      expect(problemFields(named)).toEqual(['policy.connector.settings.program']);
      expect(named.detail).toContain('program "/bin/sh" is not registered');
    });

    it('refuses a command connector outright when no program is registered, naming the field', async () => {
      const problem = expectProblem(await put(bare, secretPolicy(unique('none'), { connector: { type: 'command', settings: { program: 'vendor-cli.cjs' } } })), 422, 'ERR_ROTATION_POLICY_INVALID');
      expect(problemFields(problem)).toEqual(['policy.connector.settings.program']);
      expect(problem.detail).toContain('no program is registered in the server configuration');
    });

    it('refuses a registered program given an argument its registration does not allow, or a loader variable', async () => {
      const args = expectProblem(await put(configured, secretPolicy(unique('args'), { connector: { type: 'command', settings: { program: 'vendor-cli.cjs', args: ['--region=eu', '--exec=/bin/sh'] } } })), 422, 'ERR_ROTATION_POLICY_INVALID');
      expect(problemFields(args)).toEqual(['policy.connector.settings.args.1']);
      const env = expectProblem(await put(configured, secretPolicy(unique('env'), { connector: { type: 'command', settings: { program: 'vendor-cli.cjs', env: { NODE_OPTIONS: '--require /tmp/x.js' } } } })), 422, 'ERR_ROTATION_POLICY_INVALID');
      expect(problemFields(env)).toEqual(['policy.connector.settings.env.NODE_OPTIONS']);
      expect((await put(configured, secretPolicy(unique('ok'), { connector: { type: 'command', settings: { program: 'vendor-cli.cjs', args: ['--region=eu'] } } }))).statusCode).toBe(201);
    });

    it('refuses a command line as a deploy hook, and a hook program or argument the registry does not allow', async () => {
      const connector = { type: 'command', settings: { program: 'vendor-cli.cjs' } };
      // The wire schema no longer has a command field: refused before the validator runs.
      const line = expectProblem(await put(configured, secretPolicy(unique('hook'), { connector, deployHook: { command: ['/bin/sh', '-c', `cat ${MASTER_KEY_FILE}`] } })), 400, 'ERR_INVALID_REQUEST');
      expect(problemFields(line)).toEqual(['policy.deployHook.command']);
      const unknown = expectProblem(await put(configured, secretPolicy(unique('hook'), { connector, deployHook: { program: 'sh' } })), 422, 'ERR_ROTATION_POLICY_INVALID');
      expect(problemFields(unknown)).toEqual(['policy.deployHook.program']);
      const arg = expectProblem(await put(configured, secretPolicy(unique('hook'), { connector, deployHook: { program: 'vendor-cli.cjs', args: ['-e'] } })), 422, 'ERR_ROTATION_POLICY_INVALID');
      expect(problemFields(arg)).toEqual(['policy.deployHook.args.0']);
      const none = expectProblem(await put(bare, secretPolicy(unique('hook'), { connector: httpTo('https://api.vendor.test'), deployHook: { program: 'vendor-cli.cjs' } })), 422, 'ERR_ROTATION_POLICY_INVALID');
      expect(problemFields(none)).toContain('policy.deployHook.program');
    });

    it('never starts a registered program whose file was swapped: the run fails, not retried, and nothing of the file leaks', async () => {
      const program = writeProgram(dir, `swap-${dialect}.cjs`, `process.stdout.write('{}')`);
      const swapCtx = await createTestContext(dialect, { programs: [program] });
      try {
        const ctx = () => swapCtx;
        writeFileSync(program.path, SWAPPED);
        const run = await runOf(ctx, secretPolicy(unique('swap'), { connector: { type: 'command', settings: { program: program.name } } }));
        expect(run.status).not.toBe('done');
        // ERR_CONNECTOR_PROGRAM_REFUSED (not retryable); the run record keeps its message.
        expect(run.error).toContain(`program "${program.name}": the file at its registered path no longer has its registered SHA-256; it was not started`);
        expect(run.timeline.filter((step) => step.outcome === 'retry')).toEqual([]);
        expect(existsSync(SWAP_MARKER)).toBe(false);
        const everything = JSON.stringify(run);
        expect(everything).not.toContain(MASTER_KEY_TEXT);
        expect(everything).not.toContain('cat ');
      } finally {
        await swapCtx.close();
      }
    });
  });

  describe('egress at put time', () => {
    const TARGETS = [
      ['https://169.254.169.254', '169.254.169.254 is a metadata address'],
      ['https://[fd00:ec2::254]', 'fd00:ec2::254 is a metadata address'],
      ['https://127.0.0.1:8443', '127.0.0.1 is a loopback address'],
      ['http://127.0.0.1:8080', '127.0.0.1 is a loopback address'],
      ['http://localhost:8080', 'localhost:8080 is not in egress.allow'],
      ['https://10.1.2.3', '10.1.2.3 is a private address'],
      ['https://[::ffff:127.0.0.1]', '127.0.0.1 is a loopback address'],
      ['https://[::1]', '::1 is a loopback address'],
      ['https://evil.example', 'evil.example:443 is not in egress.allow'],
    ] as const;

    it('refuses http connector URLs to metadata, loopback, private and unlisted hosts, naming each field', async () => {
      for (const [base, reason] of TARGETS) {
        const problem = expectProblem(await put(configured, secretPolicy(unique('http'), { connector: httpTo(base) })), 422, 'ERR_ROTATION_POLICY_INVALID');
        expect(problemFields(problem), base).toEqual(['policy.connector.settings.create.url', 'policy.connector.settings.test.url', 'policy.connector.settings.revoke.url']);
        expect(problem.detail, base).toContain(reason);
      }
      expect((await put(configured, secretPolicy(unique('http'), { connector: httpTo('https://api.vendor.test') }))).statusCode).toBe(201);
    });

    it('refuses health check and deploy hook URLs the same way', async () => {
      const connector = httpTo('https://api.vendor.test');
      for (const [base, reason] of TARGETS) {
        const health = expectProblem(await put(configured, secretPolicy(unique('hc'), { connector, healthChecks: [{ url: `${base}/health` }] })), 422, 'ERR_ROTATION_POLICY_INVALID');
        expect(problemFields(health), base).toEqual(['policy.healthChecks.0.url']);
        expect(health.detail, base).toContain(reason);
        const hook = expectProblem(await put(configured, secretPolicy(unique('dh'), { connector, deployHook: { url: `${base}/hook` } })), 422, 'ERR_ROTATION_POLICY_INVALID');
        expect(problemFields(hook), base).toEqual(['policy.deployHook.url']);
      }
    });

    it('refuses every URL when the configuration lists no host', async () => {
      const problem = expectProblem(await put(bare, secretPolicy(unique('bare'), { connector: httpTo('https://api.vendor.test') })), 422, 'ERR_ROTATION_POLICY_INVALID');
      expect(problem.detail).toContain('api.vendor.test:443 is not in egress.allow');
    });
  });

  describe('egress at call time', () => {
    it('refuses a listed name that resolves to a private address, without connecting, and does not retry', async () => {
      const before = trap.connections();
      const run = await runOf(configured, secretPolicy(unique('dns'), { connector: httpTo(`https://vendor.attacker.test:${trap.port}`) }));
      expect(run.status).not.toBe('done');
      // ERR_CONNECTOR_EGRESS_REFUSED (not retryable): names the host and why, never the URL.
      expect(run.error).toBe('http connector, create: egress to vendor.attacker.test is refused: 127.0.0.1 is a loopback address and no IP rule lists it');
      expect(run.timeline.filter((step) => step.outcome === 'retry')).toEqual([]);
      expect(trap.connections()).toBe(before);
    });

    it('fails the health check and the deploy hook of names that resolve to loopback, without connecting', async () => {
      const before = trap.connections();
      const health = await runOf(configured, secretPolicy(unique('dnshc'), { connector: { type: 'command', settings: { program: 'vendor-cli.cjs' } }, healthChecks: [{ url: `https://health.attacker.test:${trap.port}/` }] }));
      expect(health.status).not.toBe('done');
      expect(JSON.stringify(health.timeline)).toContain('egress to health.attacker.test is refused');
      const hook = await runOf(configured, secretPolicy(unique('dnsdh'), { connector: { type: 'command', settings: { program: 'vendor-cli.cjs' } }, deployHook: { url: `https://hook.attacker.test:${trap.port}/` } }));
      expect(hook.status).not.toBe('done');
      expect(hook.error).toBe('the deploy hook: egress to hook.attacker.test is refused: 127.0.0.1 is a loopback address and no IP rule lists it');
      expect(hook.timeline.filter((step) => step.step === 'deploy' && step.outcome === 'retry')).toEqual([]);
      expect(trap.connections()).toBe(before);
    });

    it('does not follow a redirect to another host', async () => {
      const before = redirectTargetHits;
      const run = await runOf(withRedirector, secretPolicy(unique('redir'), { connector: httpTo(`http://127.0.0.1:${redirectorPort}`) }));
      expect(run.status).not.toBe('done');
      expect(run.error).toContain('answered 307');
      expect(redirectTargetHits).toBe(before);
    });
  });
});
