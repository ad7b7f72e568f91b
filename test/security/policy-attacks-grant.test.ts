/**
 * Attacks on rotation policies through the grant, as the red team ran them: a token with
 * rotation:write, rotation:run and rotation:read (and a little of the vault) tries to make a
 * policy read or write what it cannot, and a policy outlives its author's grant. Every case is
 * refused; a policy whose author was revoked or narrowed never reaches the vendor.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEventWire } from '../../src/contract/index.js';
import { ConnectorError, type Connector } from '../../src/rotation/index.js';
import { describeEachDialect } from '../support/databases.js';
import { startFakeVendor, type FakeVendor } from '../support/fake-vendor.js';
import { drive, vendorSettings } from '../support/rotation.js';
import { auditAfter, auditHead, expectProblem, idOf, useContext } from '../http/helpers.js';

const ROTATION = ['rotation:write', 'rotation:run', 'rotation:read'];
const TEAM = ['secrets:read:team/*', 'secrets:write:team/*'];
const MASTER_LIKE = randomBytes(32).toString('base64');
const PEM = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const LOOT = 'loot-value-that-must-not-leak-42';

/**
 * A stand-in for the command connector (the outbound work replaces how programs are named):
 * create reads what `settings.secrets` names, as the real one hands it to its program, and fails
 * with a "stderr" that prints it, a master-key-like base64 value, a PEM block and a live token.
 */
function leakyCommand(leak: () => string): Connector {
  const fail = (step: 'create' | 'set' | 'test' | 'revoke', text: string) =>
    new ConnectorError('ERR_CONNECTOR_FAILED', `command connector, ${step}: the program exited with status 1; stderr: ${text}`, { connector: 'command', step, retryable: false });
  return {
    type: 'command',
    validateSettings: () => [],
    async create(ctx) {
      const handed: string[] = [];
      for (const path of Object.values((ctx.settings.secrets ?? {}) as Record<string, string>)) handed.push(String(await ctx.readSecret(path)));
      throw fail('create', `read ${handed.join(' ')}\nmaster ${MASTER_LIKE}\n${PEM}token ${leak()}\n${'x'.repeat(400)}`);
    },
    async set() {
      throw fail('set', 'unused');
    },
    async test() {
      return { ok: false, evidence: {} };
    },
    async revoke() {
      return {};
    },
  };
}

describeEachDialect('policy attacks through the grant', (dialect) => {
  let rootToken = '';
  const ctx = useContext(dialect, { connectors: [leakyCommand(() => rootToken)] });
  let vendor: FakeVendor;

  beforeAll(async () => {
    vendor = await startFakeVendor();
    rootToken = ctx().rootToken;
    const root = { actor: 'test' };
    await ctx().secrets.put(root, 'admin/x', { value: 'the-admin-secret-of-someone-else' });
    await ctx().secrets.put(root, 'team/vendor-admin', { value: vendor.adminToken });
    await ctx().secrets.put(root, 'team/loot', { value: LOOT });
  });
  afterAll(async () => {
    await vendor.close();
  });

  const put = (token: string, policy: Record<string, unknown>) =>
    ctx().request({ method: 'PUT', url: `/v1/rotation/policies/${String(policy.name)}`, token, body: { policy } });

  const httpPolicy = (name: string, target: string, settings: Record<string, unknown> = vendorSettings(vendor, 'team/vendor-admin')) => ({
    name,
    target: { secret: target },
    schedule: { every: '1h' },
    overlap: '30m',
    connector: { type: 'http', settings },
  });

  /** Puts a policy that must be refused for `scope` at `field`, and checks nothing was stored and the denial was audited. */
  async function refusedPut(token: string, policy: Record<string, unknown>, scope: string, field: string): Promise<void> {
    const head = await auditHead(ctx());
    const problem = expectProblem(await put(token, policy), 403, 'ERR_FORBIDDEN');
    expect(problem.detail).toContain(scope);
    expect((problem as unknown as { errors: unknown[] }).errors).toEqual(expect.arrayContaining([{ field, message: expect.stringContaining(scope) }]));
    const events = await auditAfter(ctx(), head);
    expect(events.map((event) => event.action)).toEqual(['auth.denied']);
    expect(events[0]).toMatchObject({ actor: idOf(token), target: `rotation-policy:${String(policy.name)}`, data: { requiredScope: expect.any(String) } });
    expect((events[0]!.data as { requiredScopes: string[] }).requiredScopes).toContain(scope);
    expectProblem(await ctx().request({ method: 'GET', url: `/v1/rotation/policies/${String(policy.name)}` }), 404, 'ERR_ROTATION_POLICY_NOT_FOUND');
  }

  describe('at put', () => {
    it('refuses an http policy whose adminSecret the token cannot read', async () => {
      const attacker = await ctx().token([...ROTATION, ...TEAM]);
      await refusedPut(attacker, httpPolicy('foreign-admin', 'team/a', vendorSettings(vendor, 'admin/x')), 'secrets:read:admin/x', 'policy.connector.settings.adminSecret');
    });

    it('refuses a command policy that hands the program a path the token cannot read', async () => {
      const attacker = await ctx().token([...ROTATION, ...TEAM]);
      const policy = { ...httpPolicy('loot', 'team/b'), connector: { type: 'command', settings: { command: '/bin/true', secrets: { loot: 'admin/x' } } } };
      await refusedPut(attacker, policy, 'secrets:read:admin/x', 'policy.connector.settings.secrets.loot');
    });

    it('refuses a target secret the token cannot write', async () => {
      const attacker = await ctx().token([...ROTATION, ...TEAM, 'secrets:read:admin/*']);
      await refusedPut(attacker, httpPolicy('foreign-target', 'admin/x'), 'secrets:write:admin/x', 'policy.target.secret');
    });

    it('refuses a deliverTo the token cannot write', async () => {
      const attacker = await ctx().token([...ROTATION, ...TEAM, 'keys:rotate']);
      const policy = { name: 'deliver-away', target: { keys: { owner: 'checkout' } }, schedule: { every: '30d' }, overlap: '1h', connector: { type: 'keysmith-key', settings: { deliverTo: 'admin/x' } } };
      await refusedPut(attacker, policy, 'secrets:write:admin/x', 'policy.connector.settings.deliverTo');
    });

    it('refuses a keys target without keys:rotate', async () => {
      const attacker = await ctx().token([...ROTATION, ...TEAM]);
      const policy = { name: 'keys-no-rotate', target: { keys: { owner: 'checkout' } }, schedule: { every: '30d' }, overlap: '1h', connector: { type: 'keysmith-key' } };
      await refusedPut(attacker, policy, 'keys:rotate', 'policy.target.keys');
    });

    it('refuses a policy the scheduler would start for an author without rotation:run', async () => {
      const attacker = await ctx().token(['rotation:write', 'rotation:read', ...TEAM]);
      await refusedPut(attacker, httpPolicy('no-run', 'team/c'), 'rotation:run', 'policy.schedule');
    });

    it('accepts the same policies from a token that holds what they use', async () => {
      const author = await ctx().token([...ROTATION, ...TEAM]);
      expect((await put(author, httpPolicy('own-admin', 'team/d'))).statusCode).toBe(201);
    });
  });

  describe('at trigger', () => {
    it('refuses to start a rotation of a secret the caller cannot write', async () => {
      const author = await ctx().token([...ROTATION, ...TEAM]);
      expect((await put(author, httpPolicy('trigger-guarded', 'team/e'))).statusCode).toBe(201);
      const runner = await ctx().token(['rotation:run', 'rotation:read']);
      const head = await auditHead(ctx());
      const problem = expectProblem(await ctx().request({ method: 'POST', url: '/v1/rotations', token: runner, body: { policy: 'trigger-guarded' } }), 403, 'ERR_FORBIDDEN');
      expect(problem.detail).toContain('secrets:write:team/e');
      const events = await auditAfter(ctx(), head);
      expect(events.map((event) => event.action)).toEqual(['auth.denied']);
      expect(await ctx().store.db.selectFrom('rotation_runs').select('id').where('policy', '=', 'trigger-guarded').execute()).toEqual([]);
    });
  });

  describe('at rollback', () => {
    it('refuses to roll back a run on a secret the caller cannot write', async () => {
      const seeded = vendor.seedKey();
      await ctx().secrets.put({ actor: 'test' }, 'team/rolled', { value: seeded.secret, vendorId: seeded.id });
      expect((await put(ctx().rootToken, httpPolicy('rollback-guarded', 'team/rolled'))).statusCode).toBe(201);
      const started = await ctx().request({ method: 'POST', url: '/v1/rotations', body: { policy: 'rollback-guarded' } });
      expect(started.statusCode, started.body).toBe(201);
      const done = await drive(ctx(), started.json().id, { until: (run) => run.status !== 'running' });
      expect(done.status).toBe('done');
      const runner = await ctx().token(['rotation:run', 'rotation:read']);
      const problem = expectProblem(await ctx().request({ method: 'POST', url: `/v1/rotations/${done.id}/rollback`, token: runner, body: {} }), 403, 'ERR_FORBIDDEN');
      expect(problem.detail).toContain('secrets:write:team/rolled');
      expect((await ctx().rotation.get(done.id)).status).toBe('done');
      const writer = await ctx().token(['rotation:run', 'secrets:write:team/*']);
      const rolled = await ctx().request({ method: 'POST', url: `/v1/rotations/${done.id}/rollback`, token: writer, body: {} });
      expect(rolled.statusCode, rolled.body).toBe(200);
    });
  });

  describe('when the author loses the grant', () => {
    /** A live vendor key at `path`, a policy on it put by a fresh author; returns the author's token. */
    async function authoredPolicy(name: string, path: string): Promise<string> {
      const seeded = vendor.seedKey();
      await ctx().secrets.put({ actor: 'test' }, path, { value: seeded.secret, vendorId: seeded.id });
      const author = await ctx().token([...ROTATION, ...TEAM]);
      const res = await put(author, httpPolicy(name, path));
      expect(res.statusCode, res.body).toBe(201);
      return author;
    }

    async function expectRefusedRun(runId: string, author: string, scope: string, vendorCalls: number): Promise<void> {
      const head = await auditHead(ctx());
      const run = await drive(ctx(), runId);
      expect(run.status).toBe('failed');
      expect(run.error).toContain(`the policy's author ${idOf(author)} no longer holds ${scope}`);
      expect(run.timeline.map((step) => `${step.step}:${step.outcome}`)).toEqual(['create:refused']);
      const events = (await auditAfter(ctx(), head)).filter((event) => event.target === runId);
      expect(events.map((event) => event.action)).toEqual(['rotation.run.alert', 'rotation.run.failed']);
      expect(events[0]!.data).toMatchObject({ message: expect.stringContaining(`no longer holds ${scope}`) });
      // Other runs of this suite may still be talking to the vendor: this one never did.
      expect(vendor.log.filter((request) => request.idempotencyKey === runId), 'the vendor saw a call of this run').toEqual([]);
      expect(vendor.keys().filter((key) => key.name === `keysmith-${runId}`)).toEqual([]);
      expect(vendor.log.length).toBeGreaterThanOrEqual(vendorCalls);
      const api = (await ctx().request({ method: 'GET', url: `/v1/rotations/${runId}` })).json() as { error: string };
      expect(api.error).toBe(run.error);
    }

    it('a revoked author: a run started by another token fails before any vendor call, with an alert', async () => {
      const author = await authoredPolicy('revoked-author', 'team/revoked');
      expect((await ctx().request({ method: 'POST', url: `/v1/tokens/${idOf(author)}/revoke`, body: { reason: 'left' } })).statusCode).toBe(200);
      const calls = vendor.log.length;
      const started = await ctx().request({ method: 'POST', url: '/v1/rotations', body: { policy: 'revoked-author' } });
      expect(started.statusCode, started.body).toBe(201);
      await expectRefusedRun(started.json().id, author, 'rotation:run: its token is revoked', calls);
    });

    it('a narrowed author: the scheduled run fails naming the scope it lost', async () => {
      const author = await authoredPolicy('narrowed-author', 'team/narrowed');
      // Tokens keep their scopes for life through the API; an operator (or a future API) may narrow one in place.
      await ctx()
        .store.db.updateTable('api_keys')
        .set({ scopes: JSON.stringify([...ROTATION, 'secrets:read:team/narrowed', 'secrets:write:team/narrowed']) })
        .where('id', '=', idOf(author))
        .execute();
      ctx().keys.invalidate([idOf(author)]);
      const calls = vendor.log.length;
      ctx().clock.advance(2 * 3_600_000);
      const head = await auditHead(ctx());
      await ctx().rotation.scheduleDue();
      const started = (await auditAfter(ctx(), head)).find((event: AuditEventWire) => event.action === 'rotation.run.started' && (event.data as { policy?: string }).policy === 'narrowed-author');
      expect(started, 'the scheduler started the policy').toBeDefined();
      await expectRefusedRun(started!.target!, author, 'secrets:read:team/vendor-admin', calls);
    });

    it('a run started before runs recorded their author (an upgrade) is checked against the policy\'s author', async () => {
      const author = await authoredPolicy('upgraded-author', 'team/upgraded');
      const started = await ctx().request({ method: 'POST', url: '/v1/rotations', body: { policy: 'upgraded-author' } });
      expect(started.statusCode, started.body).toBe(201);
      const runId = started.json().id as string;
      const row = await ctx().store.db.selectFrom('rotation_runs').select('state').where('id', '=', runId).executeTakeFirstOrThrow();
      const { author: recorded, ...older } = JSON.parse(row.state) as { author?: string };
      expect(recorded).toBe(idOf(author));
      await ctx().store.db.updateTable('rotation_runs').set({ state: JSON.stringify(older) }).where('id', '=', runId).execute();
      expect((await ctx().request({ method: 'POST', url: `/v1/tokens/${idOf(author)}/revoke`, body: { reason: 'left' } })).statusCode).toBe(200);
      await expectRefusedRun(runId, author, 'rotation:run: its token is revoked', vendor.log.length);
    });

    it('a rotated author stands for its successor: the run goes on to the vendor', async () => {
      for (const key of vendor.activeKeys()) key.revoked = true; // the account's two-key limit
      const author = await authoredPolicy('rotated-author', 'team/rotated');
      const rotated = await ctx().request({ method: 'POST', url: `/v1/tokens/${idOf(author)}/rotate`, body: { overlap: '1m' } });
      expect(rotated.statusCode, rotated.body).toBe(201);
      ctx().clock.advance(3_600_000);
      expect((await ctx().keys.get(idOf(author), 'management')).status).toBe('superseded');
      const calls = vendor.log.length;
      const started = await ctx().request({ method: 'POST', url: '/v1/rotations', body: { policy: 'rotated-author' } });
      expect(started.statusCode, started.body).toBe(201);
      const run = await drive(ctx(), started.json().id, { until: (detail) => detail.timeline.length > 0 });
      expect(run.timeline[0], JSON.stringify(run.timeline[0])).toMatchObject({ step: 'create', outcome: 'ok' });
      expect(vendor.log.length).toBeGreaterThan(calls);
      expect(vendor.log.filter((request) => request.idempotencyKey === run.id)).not.toEqual([]);
    });

    it('an expired author: a manual run fails the same way', async () => {
      const seeded = vendor.seedKey();
      await ctx().secrets.put({ actor: 'test' }, 'team/expired', { value: seeded.secret, vendorId: seeded.id });
      const issued = await ctx().request({ method: 'POST', url: '/v1/tokens', body: { scopes: [...ROTATION, ...TEAM], ttl: '1h' } });
      const author = issued.json().key as string;
      expect((await put(author, httpPolicy('expired-author', 'team/expired'))).statusCode).toBe(201);
      ctx().clock.advance(2 * 3_600_000);
      const calls = vendor.log.length;
      const started = await ctx().request({ method: 'POST', url: '/v1/rotations', body: { policy: 'expired-author' } });
      expect(started.statusCode, started.body).toBe(201);
      await expectRefusedRun(started.json().id, author, 'rotation:run: its token is expired', calls);
    });
  });

  describe('what a failed run says', () => {
    it('the error, timeline and events hold a short summary without the values read, key-like text or tokens', async () => {
      const policy = { ...httpPolicy('leaky', 'team/leaky'), connector: { type: 'command', settings: { command: '/bin/true', secrets: { loot: 'team/loot' } } } };
      expect((await put(ctx().rootToken, policy)).statusCode).toBe(201);
      const head = await auditHead(ctx());
      const started = await ctx().request({ method: 'POST', url: '/v1/rotations', body: { policy: 'leaky' } });
      expect(started.statusCode, started.body).toBe(201);
      const run = await drive(ctx(), started.json().id);
      expect(run.status).toBe('failed');
      const detail = (await ctx().request({ method: 'GET', url: `/v1/rotations/${run.id}` })).body;
      const parsed = JSON.parse(detail) as { error: string; timeline: Array<{ error: string | null }> };
      expect(parsed.error).toContain('exited with status 1');
      expect(parsed.error.length).toBeLessThanOrEqual(300);
      for (const step of parsed.timeline) expect((step.error ?? '').length).toBeLessThanOrEqual(300);
      const events = JSON.stringify(await auditAfter(ctx(), head));
      for (const text of [detail, events]) {
        for (const leaked of [LOOT, MASTER_LIKE, 'PRIVATE KEY', PEM.split('\n')[1]!, rootToken]) expect(text).not.toContain(leaked);
      }
    });
  });
});


/**
 * The reproduction itself, with the real command connector: a program prints to standard error
 * the secret it was handed, a master-key-like base64 value and a PEM block, and fails. (When the
 * program registry lands, the program is registered instead of named by path: same assertions.)
 */
describeEachDialect('a command program that prints what it read', (dialect) => {
  const ctx = useContext(dialect);
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'keysmith-leak-'));
    await ctx().secrets.put({ actor: 'test' }, 'team/loot', { value: LOOT });
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('GET /v1/rotations/{id} shows a short error with none of it', async () => {
    const script = join(dir, 'leak.cjs');
    writeFileSync(
      script,
      `let input = '';
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const request = JSON.parse(input);
  process.stderr.write('loot: ' + request.secrets.loot + '\\n' + ${JSON.stringify(MASTER_LIKE)} + '\\n' + ${JSON.stringify(PEM)} + 'done\\n');
  process.exit(1);
});
`,
    );
    const policy = {
      name: 'leak',
      target: { secret: 'team/leak' },
      schedule: { every: '1h' },
      overlap: '30m',
      connector: { type: 'command', settings: { command: process.execPath, args: [script], secrets: { loot: 'team/loot' } } },
    };
    const res = await ctx().request({ method: 'PUT', url: '/v1/rotation/policies/leak', body: { policy } });
    expect(res.statusCode, res.body).toBe(201);
    const head = await auditHead(ctx());
    const started = await ctx().request({ method: 'POST', url: '/v1/rotations', body: { policy: 'leak' } });
    expect(started.statusCode, started.body).toBe(201);
    const run = await drive(ctx(), started.json().id);
    expect(run.status).toBe('failed');
    const detail = (await ctx().request({ method: 'GET', url: `/v1/rotations/${run.id}` })).body;
    const error = (JSON.parse(detail) as { error: string }).error;
    expect(error).toContain('exited with status 1');
    expect(error).toContain('loot: [redacted]');
    expect(error.length).toBeLessThanOrEqual(300);
    const events = JSON.stringify(await auditAfter(ctx(), head));
    for (const text of [detail, events]) {
      for (const leaked of [LOOT, MASTER_LIKE, 'PRIVATE KEY', PEM.split('\n')[1]!]) expect(text).not.toContain(leaked);
    }
  });
});
