/**
 * After promote, on both store dialects: the deploy hook (a URL POSTed a notice, or a command
 * given it on stdin) runs between promote and the health gate, is retried when it fails and then
 * rolls the run back; and a gate that fails under `onFailure: alert` leaves the new credential
 * current, alerts and revokes nothing. The vendor key is rotated through the http connector and
 * the fake vendor, as in rotation-runs.test.ts.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { listAudit } from '../../src/audit/index.js';
import { createTestContext, type TestContext } from '../support/context.js';
import { registerProgram } from '../support/programs.js';
import { describeEachDialect } from '../support/databases.js';
import { startFakeVendor, type FakeVendor } from '../support/fake-vendor.js';
import { drive, startHealthEndpoint, vendorAccepts, vendorRotationSetup, vendorSettings, type HealthEndpoint } from '../support/rotation.js';

const ADMIN = { actor: 'prn_admin' };
const SECRET_PATH = 'vendors/acme/api-key';

/** A deploy-hook receiver: records each POSTed notice with what `observe` saw when it arrived. */
interface HookReceiver {
  readonly url: string;
  readonly notices: Array<{ method: string; contentType: string | undefined; body: string; seen: unknown }>;
  answer(status: number): void;
  close(): Promise<void>;
}

async function startHookReceiver(observe: () => Promise<unknown>): Promise<HookReceiver> {
  let status = 200;
  const notices: HookReceiver['notices'] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
    });
    req.on('end', () => {
      void observe()
        .catch((error: unknown) => String(error))
        .then((seen) => {
          notices.push({ method: req.method ?? '', contentType: req.headers['content-type'], body, seen });
          res.writeHead(status).end();
        });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/deployed`,
    notices,
    answer: (next) => {
      status = next;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The command hook: writes its stdin and its environment's names to files, then exits with its third argument. */
const HOOK_PROGRAM = `
const fs = require('node:fs');
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  fs.writeFileSync(process.argv[2], input);
  fs.writeFileSync(process.argv[3], JSON.stringify(Object.keys(process.env)));
  process.stderr.write('hook says: exiting ' + process.argv[4] + '\\n');
  process.exit(Number(process.argv[4]));
});
`;

describeEachDialect('rotation runs after promote: deploy hook and onFailure', (dialect) => {
  let ctx: TestContext;
  let vendor: FakeVendor;
  let health: HealthEndpoint;
  let hook: HookReceiver;
  let dir: string;
  let program: string;

  beforeAll(async () => {
    vendor = await startFakeVendor();
    health = await startHealthEndpoint();
    // What the world looks like when the notice arrives: the vault's current version, and how often the gate has probed.
    hook = await startHookReceiver(async () => ({ current: (await ctx.secrets.metadata(SECRET_PATH)).stages.current, healthHits: health.hits }));
    dir = mkdtempSync(join(tmpdir(), 'keysmith-hook-'));
    program = join(dir, 'hook.cjs');
    writeFileSync(program, `#!${process.execPath}\n${HOOK_PROGRAM}`);
    chmodSync(program, 0o700);
  });
  afterAll(async () => {
    await vendor.close();
    await health.close();
    await hook.close();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    // The operator's configuration: the fake vendor, health endpoint and hook receiver listen on
    // 127.0.0.1, and the hook program may be given files in the test's directory and an exit code.
    const inDir = `${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/[a-z0-9.-]+\\.json`;
    ctx = await createTestContext(dialect, { egress: { allow: ['127.0.0.1:*'] }, programs: [registerProgram('deploy-hook', program, { allowArgs: [inDir, '[01]'] })] });
    for (const key of vendor.activeKeys()) key.revoked = true;
    health.answer(200);
    hook.answer(200);
    hook.notices.length = 0;
  });
  afterEach(async () => {
    await ctx.close();
  });

  const vendorSetup = (policy: Record<string, unknown> = {}) => vendorRotationSetup(ctx, vendor, policy);

  async function currentValue(): Promise<string> {
    return (await ctx.secrets.read(ADMIN, SECRET_PATH)).value as string;
  }

  const outcomes = (run: { timeline: Array<{ step: string; outcome: string }> }) => run.timeline.map((step) => `${step.step}:${step.outcome}`);

  describe('deploy hook (url)', () => {
    it('POSTs a notice naming the run, target and version, after promote and before the gate, with no value', async () => {
      const { seeded, version } = await vendorSetup({ deployHook: { url: hook.url, timeout: '5s' }, healthChecks: [{ url: health.url, consecutive: 2, within: '1m' }] });
      const hitsBefore = health.hits;
      const started = await ctx.rotation.trigger(ADMIN, { secret: SECRET_PATH, trigger: 'manual' });
      const done = await drive(ctx, started!.id, { until: (run) => run.status !== 'running' });
      expect(done.status, done.error ?? '').toBe('done');
      expect(outcomes(done)).toEqual(['create:ok', 'set:ok', 'test:ok', 'promote:ok', 'deploy:ok', 'gate:ok']);
      expect(done.timeline.find((step) => step.step === 'deploy')!.evidence).toEqual({ hook: 'url', status: 200 });

      expect(hook.notices).toHaveLength(1);
      const [received] = hook.notices;
      expect(received).toMatchObject({ method: 'POST', contentType: 'application/json' });
      const newVersion = done.newCredential.version!;
      expect(newVersion).toBeGreaterThan(version);
      // Promoted already (the new version is current); the gate not yet begun (only the test step's probe so far).
      expect(received!.seen).toEqual({ current: newVersion, healthHits: hitsBefore + 1 });
      expect(health.hits).toBe(hitsBefore + 3);

      const notice = JSON.parse(received!.body) as Record<string, unknown>;
      expect(notice).toEqual({
        event: 'rotation.promoted',
        runId: started!.id,
        policy: 'acme',
        target: { kind: 'secret', id: SECRET_PATH },
        path: SECRET_PATH,
        version: newVersion,
        keyId: null,
        overlapEndsAt: done.overlapEndsAt,
      });
      const newValue = await currentValue();
      expect(received!.body).not.toContain(newValue);
      expect(received!.body).not.toContain(seeded.secret);
      expect(received!.body).not.toContain(vendor.adminToken);
    });

    it('retries a hook that answers 500 up to maxAttempts, then rolls back to the old version', async () => {
      const { seeded, version } = await vendorSetup({ deployHook: { url: hook.url } });
      hook.answer(500);
      const maxAttempts = ctx.rotation.config.maxAttempts;
      const started = await ctx.rotation.trigger(ADMIN, { secret: SECRET_PATH, trigger: 'manual' });
      const run = await drive(ctx, started!.id, { advance: true });
      expect(run.status).toBe('rolled_back');
      expect(outcomes(run)).toEqual([
        'create:ok',
        'set:ok',
        'test:ok',
        'promote:ok',
        ...Array.from({ length: maxAttempts - 1 }, () => 'deploy:retry'),
        'deploy:failed',
        'rollback:ok',
        'finish:revoked new',
      ]);
      expect(hook.notices).toHaveLength(maxAttempts);
      expect(new Set(hook.notices.map((notice) => notice.body)).size).toBe(1);
      expect(run.error).toMatch(/deploy hook did not succeed/);

      // The old version is current again, the old key still works, the new one is revoked at the vendor.
      expect((await ctx.secrets.metadata(SECRET_PATH)).stages.current).toBe(version);
      expect(await currentValue()).toBe(seeded.secret);
      expect(await vendorAccepts(vendor, seeded.secret)).toBe(true);
      expect(vendor.activeKeys().map((key) => key.id)).toEqual([seeded.id]);
      expect(run.revocations).toEqual([expect.objectContaining({ which: 'new', status: 'done', vendorId: run.newCredential.vendorId })]);
      const actions = (await listAudit(ctx.store.db, { limit: 500 })).filter((event) => event.target === run.id).map((event) => event.action);
      expect(actions).toContain('rotation.run.rolled_back');
      expect(actions).not.toContain('rotation.run.alert');
    });
  });

  describe('deploy hook (command)', () => {
    const originalMasterKey = process.env.KEYSMITH_MASTER_KEY;
    beforeEach(() => {
      // What a server started from its environment holds: the hook must not inherit it.
      process.env.KEYSMITH_MASTER_KEY = 'hook-must-never-see-this-master-key';
    });
    afterEach(() => {
      if (originalMasterKey === undefined) delete process.env.KEYSMITH_MASTER_KEY;
      else process.env.KEYSMITH_MASTER_KEY = originalMasterKey;
    });

    function hookFiles(name: string) {
      return { stdin: join(dir, `${name}-${dialect}.json`), env: join(dir, `${name}-${dialect}-env.json`) };
    }

    it('gives the notice on stdin, and not the server environment, to a program that exits 0', async () => {
      const files = hookFiles('ok');
      const { seeded } = await vendorSetup({ deployHook: { program: 'deploy-hook', args: [files.stdin, files.env, '0'], timeout: '20s' } });
      const started = await ctx.rotation.trigger(ADMIN, { secret: SECRET_PATH, trigger: 'manual' });
      const done = await drive(ctx, started!.id, { until: (run) => run.status !== 'running' });
      expect(done.status, done.error ?? '').toBe('done');
      expect(outcomes(done)).toEqual(['create:ok', 'set:ok', 'test:ok', 'promote:ok', 'deploy:ok', 'gate:ok']);
      expect(done.timeline.find((step) => step.step === 'deploy')!.evidence).toEqual({ hook: 'command', exitCode: 0 });

      const stdin = readFileSync(files.stdin, 'utf8');
      expect(JSON.parse(stdin)).toMatchObject({ event: 'rotation.promoted', runId: started!.id, target: { kind: 'secret', id: SECRET_PATH }, version: done.newCredential.version });
      expect(stdin).not.toContain(await currentValue());
      expect(stdin).not.toContain(seeded.secret);
      const env = JSON.parse(readFileSync(files.env, 'utf8')) as string[];
      expect(env.filter((name) => name.startsWith('KEYSMITH_'))).toEqual([]);
    });

    it('rolls back when the program exits 1, every try', async () => {
      const files = hookFiles('fail');
      const { seeded, version } = await vendorSetup({ deployHook: { program: 'deploy-hook', args: [files.stdin, files.env, '1'] } });
      const started = await ctx.rotation.trigger(ADMIN, { secret: SECRET_PATH, trigger: 'manual' });
      const run = await drive(ctx, started!.id, { advance: true });
      expect(run.status).toBe('rolled_back');
      expect(outcomes(run).slice(-3)).toEqual(['deploy:failed', 'rollback:ok', 'finish:revoked new']);
      expect(outcomes(run).filter((outcome) => outcome === 'deploy:retry')).toHaveLength(ctx.rotation.config.maxAttempts - 1);
      expect(existsSync(files.stdin)).toBe(true);
      expect((await ctx.secrets.metadata(SECRET_PATH)).stages.current).toBe(version);
      expect(await currentValue()).toBe(seeded.secret);
      expect(vendor.activeKeys().map((key) => key.id)).toEqual([seeded.id]);
    });
  });

  describe('onFailure: alert', () => {
    it('leaves the new credential current when the gate fails after promote, ends failed, alerts and revokes nothing', async () => {
      const { seeded, version } = await vendorSetup({ onFailure: 'alert', healthChecks: [{ url: health.url, consecutive: 2, within: '1s' }] });
      // The test step's single probe passes; the gate then sees only failures.
      health.answer(200, 500);
      const logStart = vendor.log.length;
      const started = await ctx.rotation.trigger(ADMIN, { secret: SECRET_PATH, trigger: 'manual' });
      const run = await drive(ctx, started!.id, { advance: true });
      expect(run.status).toBe('failed');
      expect(outcomes(run)).toEqual(['create:ok', 'set:ok', 'test:ok', 'promote:ok', 'gate:failed']);
      expect(run.error).toMatch(/health gate failed/);
      expect(run.revocations).toEqual([]);
      expect(run.finishedAt).not.toBeNull();

      // The new credential stays current, and both keys still work at the vendor.
      const metadata = await ctx.secrets.metadata(SECRET_PATH);
      expect(metadata.stages.current).toBe(run.newCredential.version);
      expect(metadata.stages.current).not.toBe(version);
      const newValue = await currentValue();
      expect(newValue).not.toBe(seeded.secret);
      expect(await vendorAccepts(vendor, newValue)).toBe(true);
      expect(await vendorAccepts(vendor, seeded.secret)).toBe(true);
      expect(vendor.activeKeys()).toHaveLength(2);
      expect(vendor.log.slice(logStart).filter((request) => request.method === 'DELETE')).toEqual([]);

      const events = (await listAudit(ctx.store.db, { limit: 500 })).filter((event) => event.target === run.id);
      const alerts = events.filter((event) => event.action === 'rotation.run.alert');
      expect(alerts).toHaveLength(1);
      expect(alerts[0]!.data).toMatchObject({ step: 'gate' });
      expect(events.map((event) => event.action)).toContain('rotation.run.failed');
      expect(events.map((event) => event.action)).not.toContain('rotation.revocation.done');
      expect(JSON.stringify(events)).not.toContain(newValue);

      // A later tick finds nothing to do for the run: nothing is revoked after the fact either.
      ctx.clock.advance(2 * 3_600_000);
      await ctx.rotation.tick();
      expect((await ctx.rotation.get(run.id)).revocations).toEqual([]);
      expect(vendor.activeKeys()).toHaveLength(2);
    });
  });
});
