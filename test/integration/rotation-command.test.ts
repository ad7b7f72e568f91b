/**
 * The command connector driven by the rotation engine, on both store dialects: a small node
 * program speaks the connector's JSON protocol (one object in on stdin, one out on stdout per
 * step), records each step it is asked to do, and is careless with the new value (it echoes it
 * into its evidence) so the run record's scrubbing is put to the test.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from 'vitest';
import { listAudit } from '../../src/audit/index.js';
import { createTestContext, type TestContext } from '../support/context.js';
import { registerProgram } from '../support/programs.js';
import { describeEachDialect } from '../support/databases.js';
import { drive, policyAuthor } from '../support/rotation.js';

const ADMIN = { actor: 'prn_admin' };
const SECRET_PATH = 'vendors/tiny/api-key';
const ADMIN_PATH = 'vendors/tiny/admin';
const OLD_VALUE = 'tiny_live_old_0123456789abcdef';
const ADMIN_TOKEN = 'tiny_admin_token_9876543210fedcba';

/**
 * The program: appends `{ step, runId, vendorId, hasValue, admin }` (never a value) to the log
 * named by its first argument, then answers. create makes `tiny_live_<random>`.
 */
const PROGRAM = `
const fs = require('node:fs');
const crypto = require('node:crypto');
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const request = JSON.parse(input);
  const credential = request.credential || {};
  fs.appendFileSync(process.argv[2], JSON.stringify({
    step: request.step,
    runId: request.runId,
    vendorId: credential.vendorId ?? null,
    hasValue: typeof credential.value === 'string' && credential.value.length > 0,
    admin: request.secrets.admin === ${JSON.stringify(ADMIN_TOKEN)},
    region: request.settings.region ?? null,
  }) + '\\n');
  let answer;
  if (request.step === 'create') {
    const value = 'tiny_live_' + crypto.randomBytes(16).toString('hex');
    answer = { credential: { value, vendorId: 'tiny_' + request.runId }, evidence: { made: true, echo: 'made ' + value } };
  } else if (request.step === 'test') {
    answer = { ok: true, evidence: { echo: 'tested ' + credential.value, admin: request.secrets.admin } };
  } else {
    answer = { evidence: { done: request.step, echo: String(credential.value) } };
  }
  process.stdout.write(JSON.stringify(answer));
});
`;

describeEachDialect('rotation runs with the command connector', (dialect) => {
  let ctx: TestContext;
  let dir: string;
  let program: string;
  let log: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'keysmith-command-run-'));
    program = join(dir, 'tiny-vendor.cjs');
    writeFileSync(program, `#!${process.execPath}\n${PROGRAM}`);
    chmodSync(program, 0o700);
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    // The operator registers the program; a policy may add only a log file in the test's directory.
    ctx = await createTestContext(dialect, { programs: [registerProgram('tiny-vendor', program, { allowArgs: [`${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/steps-[0-9a-z.-]+\\.jsonl`] })] });
    log = join(dir, `steps-${Date.now()}-${Math.random().toString(36).slice(2)}.jsonl`);
    writeFileSync(log, '');
  });
  afterEach(async () => {
    await ctx.close();
  });

  function steps(): Array<Record<string, unknown>> {
    return readFileSync(log, 'utf8')
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }

  it('runs create, set, test and, after the overlap, revoke of the old credential, with no value in the record, timeline or audit', async () => {
    await ctx.secrets.put(ADMIN, ADMIN_PATH, { value: ADMIN_TOKEN });
    await ctx.secrets.put(ADMIN, SECRET_PATH, { value: OLD_VALUE, vendorId: 'tiny_old' });
    await ctx.rotationPolicies.put(policyAuthor(ctx), 'tiny', {
      name: 'tiny',
      target: { secret: SECRET_PATH },
      schedule: { every: '30d' },
      overlap: '1h',
      connector: {
        type: 'command',
        settings: { program: 'tiny-vendor', args: [log], timeout: '20s', secrets: { admin: ADMIN_PATH }, config: { region: 'eu' } },
      },
    });

    const started = await ctx.rotation.trigger(ADMIN, { secret: SECRET_PATH, trigger: 'manual' });
    const done = await drive(ctx, started!.id, { until: (run) => run.status !== 'running' });
    expect(done.status, done.error ?? '').toBe('done');
    expect(done.timeline.map((step) => `${step.step}:${step.outcome}`)).toEqual(['create:ok', 'set:ok', 'test:ok', 'promote:ok', 'gate:ok']);
    const newValue = (await ctx.secrets.read(ADMIN, SECRET_PATH)).value as string;
    expect(newValue).toMatch(/^tiny_live_[0-9a-f]{32}$/);
    expect(done.newCredential.vendorId).toBe(`tiny_${started!.id}`);
    // Nothing is revoked before the overlap ends.
    expect(steps().map((entry) => entry.step)).toEqual(['create', 'set', 'test']);

    const paid = await drive(ctx, started!.id, { advance: true });
    expect(paid.revocations).toEqual([expect.objectContaining({ which: 'old', status: 'done', vendorId: 'tiny_old' })]);
    expect(paid.timeline.map((step) => `${step.step}:${step.outcome}`)).toEqual(['create:ok', 'set:ok', 'test:ok', 'promote:ok', 'gate:ok', 'finish:revoked old']);

    // The program was asked each step once, in order, with the admin secret it was given and the right credential.
    expect(steps()).toEqual([
      { step: 'create', runId: started!.id, vendorId: null, hasValue: false, admin: true, region: 'eu' },
      { step: 'set', runId: started!.id, vendorId: `tiny_${started!.id}`, hasValue: true, admin: true, region: 'eu' },
      { step: 'test', runId: started!.id, vendorId: `tiny_${started!.id}`, hasValue: true, admin: true, region: 'eu' },
      { step: 'revoke', runId: started!.id, vendorId: 'tiny_old', hasValue: true, admin: true, region: 'eu' },
    ]);

    // The echoes reached the record, scrubbed: no value, old or new, and no admin secret anywhere.
    const record = JSON.stringify(await ctx.rotation.get(started!.id));
    expect(record).toContain('made [redacted]');
    expect(record).toContain('tested [redacted]');
    const audit = JSON.stringify(await listAudit(ctx.store.db, { limit: 500 }));
    for (const text of [record, audit]) {
      expect(text).not.toContain(newValue);
      expect(text).not.toContain(newValue.slice('tiny_live_'.length));
      expect(text).not.toContain(OLD_VALUE);
      expect(text).not.toContain(ADMIN_TOKEN);
    }
    expect(audit).toContain('rotation.revocation.done');
    expect((await ctx.audit.verify(ctx.store.db)).ok).toBe(true);
  });
});
