/**
 * Rotation runs end to end against the real store on both dialects: a vendor key rotated
 * through the http connector and the fake vendor, issued keys rotated with the traffic gate,
 * failures that discard or roll back, revocations retried until the vendor accepts, one run per
 * target however many triggers, rollback of a finished run, and the scheduler.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestContext, TEST_MASTER_KEY, type TestContext } from '../support/context.js';
import { derivedRandom } from '../../src/rotation/index.js';
import { deriveSecret } from '../../src/crypto/index.js';
import { describeEachDialect } from '../support/databases.js';
import { startFakeVendor, type FakeVendor } from '../support/fake-vendor.js';
import { drive, secondEngine, startHealthEndpoint, vendorAccepts, vendorRotationSetup, vendorSettings, type HealthEndpoint, policyAuthor } from '../support/rotation.js';
import { listAudit } from '../../src/audit/index.js';
import { isAppError } from '../../src/shared/errors.js';

const ADMIN = { actor: 'prn_admin' };
const SECRET_PATH = 'vendors/acme/api-key';

describeEachDialect('rotation runs', (dialect) => {
  let ctx: TestContext;
  let vendor: FakeVendor;
  let health: HealthEndpoint;

  beforeAll(async () => {
    vendor = await startFakeVendor();
    health = await startHealthEndpoint();
  });
  afterAll(async () => {
    await vendor.close();
    await health.close();
  });
  beforeEach(async () => {
    // The fake vendor and the health endpoint listen on 127.0.0.1: the operator lists it.
    ctx = await createTestContext(dialect, { egress: { allow: ['127.0.0.1:*'] } });
    for (const key of vendor.activeKeys()) key.revoked = true;
    vendor.failNextRevocations(0);
    health.answer(200);
  });
  afterEach(async () => {
    await ctx.close();
  });

  const vendorSetup = async (policy: Record<string, unknown> = {}) => (await vendorRotationSetup(ctx, vendor, policy)).seeded;

  async function currentValue(path = SECRET_PATH): Promise<string> {
    return (await ctx.secrets.read(ADMIN, path)).value as string;
  }

  it('rotates a vendor key: new key current, old revoked after the overlap, exactly one active key', async () => {
    const seeded = await vendorSetup({ healthChecks: [{ url: health.url, consecutive: 2, within: '1m' }] });
    const started = await ctx.rotation.trigger(ADMIN, { secret: SECRET_PATH, trigger: 'manual', reason: 'test' });
    expect(started?.status).toBe('running');

    // Up to done: the old key still works during the overlap.
    const done = await drive(ctx, started!.id, { until: (run) => run.status !== 'running' });
    expect(done.status).toBe('done');
    expect(done.timeline.map((step) => `${step.step}:${step.outcome}`)).toEqual(['create:ok', 'set:ok', 'test:ok', 'promote:ok', 'gate:ok']);
    const current = await currentValue();
    expect(current).not.toBe(seeded.secret);
    expect(await vendorAccepts(vendor, seeded.secret)).toBe(true);
    expect(vendor.activeKeys()).toHaveLength(2);
    expect(done.revocations).toHaveLength(1);
    expect(done.revocations[0]).toMatchObject({ which: 'old', status: 'waiting', vendorId: seeded.id, notBefore: done.overlapEndsAt });
    expect(done.newCredential.vendorId).toBe(vendor.activeKeys().find((key) => key.secret === current)?.id);
    const gate = done.timeline.find((step) => step.step === 'gate')!;
    expect(gate.evidence['check0.passes']).toBe(2);

    // After the overlap the old key is revoked; the vendor holds exactly the key the vault calls current.
    const paid = await drive(ctx, started!.id, { advance: true });
    expect(paid.revocations[0]).toMatchObject({ status: 'done', attempts: 1 });
    expect(await vendorAccepts(vendor, seeded.secret)).toBe(false);
    expect(vendor.activeKeys().map((key) => key.secret)).toEqual([current]);

    // No secret anywhere in the run record, the timeline or the audit log; the chain holds.
    const record = JSON.stringify(await ctx.rotation.get(started!.id));
    expect(record).not.toContain(current);
    expect(record).not.toContain(seeded.secret);
    const audit = JSON.stringify(await listAudit(ctx.store.db, { limit: 500 }));
    expect(audit).not.toContain(current);
    expect(audit).not.toContain(vendor.adminToken);
    expect(audit).toContain('rotation.run.done');
    expect((await ctx.audit.verify(ctx.store.db)).ok).toBe(true);
  });

  it('rolls back when the health gate fails after promote, and the old key keeps working', async () => {
    const seeded = await vendorSetup({ healthChecks: [{ url: health.url, consecutive: 2, within: '1s' }] });
    // The test step's single probe passes; the gate then sees only failures.
    health.answer(200, 500);
    const started = await ctx.rotation.trigger(ADMIN, { secret: SECRET_PATH, trigger: 'manual' });
    const run = await drive(ctx, started!.id, { advance: true });
    expect(run.status).toBe('rolled_back');
    expect(run.timeline.map((step) => `${step.step}:${step.outcome}`)).toEqual(['create:ok', 'set:ok', 'test:ok', 'promote:ok', 'gate:failed', 'rollback:ok', 'finish:revoked new']);
    expect(run.error).toMatch(/health gate failed/);
    expect(await currentValue()).toBe(seeded.secret);
    expect(await vendorAccepts(vendor, seeded.secret)).toBe(true);
    expect(vendor.activeKeys().map((key) => key.id)).toEqual([seeded.id]);
    expect(run.revocations).toEqual([expect.objectContaining({ which: 'new', status: 'done', vendorId: run.newCredential.vendorId })]);
  });

  it('discards the pending key when the connector test fails before promote', async () => {
    const seeded = await vendorSetup();
    const policy = (await ctx.rotationPolicies.get('acme')).policy;
    const settings = { ...vendorSettings(vendor), test: { method: 'GET', url: `${vendor.url}/me`, headers: { Authorization: 'Bearer {{key}}' }, expect: 299 } };
    await ctx.rotationPolicies.put(policyAuthor(ctx), 'acme', { ...policy, connector: { type: 'http', settings } });
    const started = await ctx.rotation.trigger(ADMIN, { secret: SECRET_PATH, trigger: 'manual' });
    const run = await drive(ctx, started!.id, { advance: true });
    expect(run.status).toBe('failed');
    expect(run.timeline.map((step) => `${step.step}:${step.outcome}`)).toEqual(['create:ok', 'set:ok', 'test:failed', 'discard:ok', 'finish:revoked new']);
    const metadata = await ctx.secrets.metadata(SECRET_PATH);
    expect(metadata.stages.pending).toBeUndefined();
    expect(await currentValue()).toBe(seeded.secret);
    expect(vendor.activeKeys().map((key) => key.id)).toEqual([seeded.id]);
  });

  it('retries a revocation the vendor refuses twice, and it succeeds the third time', async () => {
    const seeded = await vendorSetup();
    const started = await ctx.rotation.trigger(ADMIN, { secret: SECRET_PATH, trigger: 'manual' });
    await drive(ctx, started!.id, { until: (run) => run.status === 'done' });
    vendor.failNextRevocations(2);
    const logStart = vendor.log.length;
    const run = await drive(ctx, started!.id, { advance: true });
    expect(run.revocations[0]).toMatchObject({ status: 'done', attempts: 3, lastError: null });
    expect(vendor.log.slice(logStart).filter((request) => request.method === 'DELETE').map((request) => request.status)).toEqual([503, 503, 204]);
    expect(await vendorAccepts(vendor, seeded.secret)).toBe(false);
    const retries = (await listAudit(ctx.store.db, { limit: 500 })).filter((event) => event.action === 'rotation.revocation.retry');
    expect(retries).toHaveLength(2);
    expect(await ctx.rotation.stats()).toMatchObject({ awaitingRevocation: 0, runs: { done: 1 }, successRate: 1 });
  });

  it('keeps a refused revocation across a restart: another engine on the same store pays it', async () => {
    const seeded = await vendorSetup();
    const started = await ctx.rotation.trigger(ADMIN, { secret: SECRET_PATH, trigger: 'manual' });
    const done = await drive(ctx, started!.id, { until: (run) => run.status === 'done' });
    vendor.failNextRevocations(1);
    ctx.clock.set(done.revocations[0]!.notBefore);
    await ctx.rotation.tick();
    expect((await ctx.rotation.get(done.id)).revocations[0]).toMatchObject({ status: 'waiting', attempts: 1, lastError: expect.stringContaining('503') });
    await ctx.rotation.stop();

    const restarted = secondEngine(ctx);
    try {
      ctx.clock.advance(60_000);
      await restarted.tick();
      expect((await restarted.get(done.id)).revocations[0]).toMatchObject({ status: 'done', attempts: 2, lastError: null });
      expect(await vendorAccepts(vendor, seeded.secret)).toBe(false);
      expect(await restarted.stats()).toMatchObject({ awaitingRevocation: 0 });
    } finally {
      await restarted.stop();
    }
  });

  it('starts one run for two concurrent triggers of one policy', async () => {
    await vendorSetup();
    const results = await Promise.allSettled([
      ctx.rotation.trigger(ADMIN, { policy: 'acme', trigger: 'event', reason: 'leak' }),
      ctx.rotation.trigger(ADMIN, { policy: 'acme', trigger: 'event', reason: 'leak' }),
    ]);
    const started = results.filter((result) => result.status === 'fulfilled');
    const refused = results.filter((result): result is PromiseRejectedResult => result.status === 'rejected');
    expect(started).toHaveLength(1);
    expect(refused).toHaveLength(1);
    expect(isAppError(refused[0]!.reason) && refused[0]!.reason.code).toBe('ERR_ROTATION_IN_PROGRESS');
    expect((await ctx.rotation.list({})).data).toHaveLength(1);
  });

  it('rolls back a finished run while its overlap lasts, and not after the old key is revoked', async () => {
    const seeded = await vendorSetup();
    const started = await ctx.rotation.trigger(ADMIN, { secret: SECRET_PATH, trigger: 'manual' });
    const done = await drive(ctx, started!.id, { until: (run) => run.status === 'done' });
    const rolled = await ctx.rotation.rollback(ADMIN, done.id);
    expect(rolled.status).toBe('rolled_back');
    expect(rolled.revocations.map((revocation) => `${revocation.which}:${revocation.status}`).sort()).toEqual(['new:waiting', 'old:cancelled']);
    expect(await currentValue()).toBe(seeded.secret);
    const settled = await drive(ctx, done.id, { advance: true });
    expect(settled.revocations.find((revocation) => revocation.which === 'new')?.status).toBe('done');
    expect(vendor.activeKeys().map((key) => key.id)).toEqual([seeded.id]);
    await expect(ctx.rotation.rollback(ADMIN, done.id)).rejects.toMatchObject({ code: 'ERR_ROTATION_ROLLBACK_CLOSED' });

    // A second rotation runs to the end; once its old key is revoked, it can no longer be rolled back.
    const again = await ctx.rotation.trigger(ADMIN, { secret: SECRET_PATH, trigger: 'manual' });
    await drive(ctx, again!.id, { advance: true });
    await expect(ctx.rotation.rollback(ADMIN, again!.id)).rejects.toMatchObject({ code: 'ERR_ROTATION_ROLLBACK_CLOSED' });
    await expect(ctx.rotation.rollback(ADMIN, 'rot_missing')).rejects.toMatchObject({ code: 'ERR_ROTATION_RUN_NOT_FOUND' });
  });

  it('refuses to roll back a run whose secret has changed since, keeping the old revocation owed', async () => {
    await vendorSetup();
    const started = await ctx.rotation.trigger(ADMIN, { secret: SECRET_PATH, trigger: 'manual' });
    const done = await drive(ctx, started!.id, { until: (run) => run.status === 'done' });
    await ctx.secrets.put(ADMIN, SECRET_PATH, { value: 'sk_put_by_hand_meanwhile' });
    await expect(ctx.rotation.rollback(ADMIN, done.id)).rejects.toMatchObject({ code: 'ERR_ROTATION_ROLLBACK_CLOSED', message: expect.stringContaining('has changed since') });
    const after = await ctx.rotation.get(done.id);
    expect(after.status).toBe('done');
    expect(after.revocations).toEqual([expect.objectContaining({ which: 'old', status: 'waiting' })]);
  });

  it('counts break-glass rotations (incident rotate) in the incident median time to rotate', async () => {
    expect((await ctx.rotation.stats()).medianSecondsToRotate.incident).toBeNull();
    await ctx.keys.issue(ADMIN, { owner: 'leaky-team', purpose: 'p', env: 'live', scopes: [] });
    await ctx.incidents.rotate(ADMIN, 'owner=leaky-team', 'leak', '1h');
    expect((await ctx.rotation.stats()).medianSecondsToRotate).toMatchObject({ incident: expect.any(Number), scheduled: null, manual: null });
  });

  it('refuses a secret no policy rotates and a key that is not active', async () => {
    await expect(ctx.rotation.trigger(ADMIN, { secret: 'nothing/here', trigger: 'manual' })).rejects.toMatchObject({ code: 'ERR_ROTATION_NO_POLICY' });
    const issued = await ctx.keys.issue(ADMIN, { owner: 'team', purpose: 'p', env: 'live', scopes: [] });
    await ctx.keys.revoke(ADMIN, issued.record.id, 'gone');
    await expect(ctx.rotation.trigger(ADMIN, { key: issued.record.id, trigger: 'manual' })).rejects.toMatchObject({ code: 'ERR_ROTATION_TARGET_INVALID' });
    await expect(ctx.rotation.trigger(ADMIN, { trigger: 'manual' })).rejects.toMatchObject({ code: 'ERR_INVALID_REQUEST' });
  });

  describe('issued keys and the traffic gate', () => {
    async function keyPolicy(keyId: string, extra: Record<string, unknown> = {}) {
      await ctx.rotationPolicies.put(policyAuthor(ctx), 'checkout-key', {
        name: 'checkout-key',
        target: { key: keyId },
        schedule: { every: '30d' },
        overlap: '1h',
        quietPeriod: '5m',
        connector: { type: 'keysmith-key', settings: { deliverTo: 'apps/checkout/api-key' } },
        ...extra,
      });
    }

    async function verify(key: string): Promise<string> {
      return (await ctx.keys.verify({ key })).code;
    }

    it('revokes the old key once traffic has moved to the new one', async () => {
      const issued = await ctx.keys.issue(ADMIN, { owner: 'checkout', purpose: 'api', env: 'live', scopes: ['orders:read'] });
      await keyPolicy(issued.record.id);
      const started = await ctx.rotation.trigger(ADMIN, { key: issued.record.id, trigger: 'manual' });
      let run = await drive(ctx, started!.id);
      expect(run).toMatchObject({ status: 'running', step: 'gate' });
      const newKey = (await ctx.secrets.read(ADMIN, 'apps/checkout/api-key')).value as string;
      expect(newKey.startsWith('ks_live_')).toBe(true);
      expect(run.newCredential.vendorId).toBe(newKey.split('_')[2] && `key_${newKey.split('_')[2]}`);

      // Consumers still use the old key: the gate waits.
      expect(await verify(issued.key)).toBe('VALID');
      ctx.clock.advance(60_000);
      run = await drive(ctx, started!.id);
      expect(run.status).toBe('running');

      // They move: the new key is used, the old one goes quiet for the quiet period.
      expect(await verify(newKey)).toBe('VALID');
      ctx.clock.advance(6 * 60_000);
      run = await drive(ctx, started!.id, { advance: true });
      expect(run.status).toBe('done');
      const gate = run.timeline.filter((step) => step.step === 'gate').at(-1)!;
      expect(gate.evidence.trafficMoved).toBe(true);
      expect(run.revocations[0]).toMatchObject({ which: 'old', status: 'done', vendorId: issued.record.id });
      expect(await verify(issued.key)).toBe('REVOKED');
      expect(await verify(newKey)).toBe('VALID');
      // The timeline's waits are recorded once, not at every look.
      expect(run.timeline.filter((step) => step.outcome === 'waiting')).toHaveLength(1);
    });

    it('keeps the old key and alerts when it is still in use as the overlap ends (onOverlapEnd: keep)', async () => {
      const issued = await ctx.keys.issue(ADMIN, { owner: 'checkout', purpose: 'api', env: 'live', scopes: [] });
      await keyPolicy(issued.record.id, { onOverlapEnd: 'keep' });
      const started = await ctx.rotation.trigger(ADMIN, { key: issued.record.id, trigger: 'manual' });
      await drive(ctx, started!.id);
      for (let minute = 0; minute < 70; minute += 10) {
        expect(await verify(issued.key)).toBe('VALID');
        ctx.clock.advance(10 * 60_000);
        await drive(ctx, started!.id);
      }
      const run = await ctx.rotation.get(started!.id);
      expect(run).toMatchObject({ status: 'done', oldKept: true, revocations: [] });
      expect(await verify(issued.key)).toBe('VALID');
      const alerts = (await listAudit(ctx.store.db, { limit: 500 })).filter((event) => event.action === 'rotation.run.alert');
      expect(alerts).toHaveLength(1);
      expect((await ctx.keys.get(issued.record.id)).graceEndsAt).toBe((await ctx.keys.get(issued.record.id)).expiresAt);
    });

    it('extends the overlap while the old key is in use, up to maxExtension (onOverlapEnd: extend)', async () => {
      const issued = await ctx.keys.issue(ADMIN, { owner: 'checkout', purpose: 'api', env: 'live', scopes: [] });
      await keyPolicy(issued.record.id, { onOverlapEnd: 'extend', maxExtension: '2h' });
      const started = await ctx.rotation.trigger(ADMIN, { key: issued.record.id, trigger: 'manual' });
      const first = await drive(ctx, started!.id);
      const graceAtStart = Date.parse((await ctx.keys.get(issued.record.id)).graceEndsAt!);
      for (let step = 0; step < 40; step += 1) {
        await verify(issued.key);
        ctx.clock.advance(10 * 60_000);
        await drive(ctx, started!.id);
      }
      const run = await ctx.rotation.get(started!.id);
      expect(first.step).toBe('gate');
      expect(run).toMatchObject({ status: 'done', oldKept: true });
      const extensions = (await listAudit(ctx.store.db, { limit: 1000 })).filter((event) => event.action === 'key.overlap.extended');
      // Two extensions of an overlap each (up to maxExtension), then kept to the key's own expiry.
      expect(extensions).toHaveLength(3);
      expect(Date.parse((extensions[1]!.data as { to: string }).to) - graceAtStart).toBeGreaterThanOrEqual(2 * 3_600_000);
      expect((extensions[2]!.data as { to: string }).to).toBe((await ctx.keys.get(issued.record.id)).expiresAt);
    });

    it('rolls a key rotation back when the health gate fails: the successor is revoked and the old key is whole again', async () => {
      const issued = await ctx.keys.issue(ADMIN, { owner: 'checkout', purpose: 'api', env: 'live', scopes: [] });
      await keyPolicy(issued.record.id, { healthChecks: [{ url: health.url, consecutive: 1, within: '1s' }] });
      health.answer(200, 503);
      const started = await ctx.rotation.trigger(ADMIN, { key: issued.record.id, trigger: 'manual' });
      const run = await drive(ctx, started!.id, { advance: true });
      expect(run.status).toBe('rolled_back');
      const old = await ctx.keys.get(issued.record.id);
      expect(old).toMatchObject({ status: 'active', replacedBy: null, graceEndsAt: null });
      expect((await ctx.keys.get(run.newCredential.vendorId!)).status).toBe('revoked');
      const verified = await ctx.keys.verify({ key: issued.key });
      expect(verified.code).toBe('VALID');
      expect('rotation' in verified ? verified.rotation : undefined).toBeUndefined();
    });

    it('rotates a key no policy covers with the default overlap, and replays its create after a crash', async () => {
      const issued = await ctx.keys.issue(ADMIN, { owner: 'solo', purpose: 'api', env: 'test', scopes: [] });
      const started = await ctx.rotation.trigger(ADMIN, { key: issued.record.id, trigger: 'manual', overlap: '2h' });
      expect(started).toMatchObject({ policy: null, connector: 'keysmith-key' });
      const run = await drive(ctx, started!.id);
      expect(run.timeline.map((step) => step.error)).toEqual([null, null, null, null, null]);
      expect(run.step).toBe('gate');
      expect(run.deliveredTo).toBe(`rotated-keys/${run.id.toLowerCase()}`);
      const old = await ctx.keys.get(issued.record.id);
      expect(Date.parse(old.graceEndsAt!) - ctx.clock.now()).toBe(2 * 3_600_000);
      const stored = (await ctx.secrets.read(ADMIN, run.deliveredTo!)).value as string;
      expect(await verify(stored)).toBe('VALID');
      // The create is idempotent on the run id: the run's random source re-derives the same key, and no other.
      const replay = await ctx.keys.replayRotation(issued.record.id, derivedRandom(deriveSecret(TEST_MASTER_KEY, 'rotation-run:v1'), run.id));
      expect(replay?.key).toBe(stored);
      expect(await ctx.keys.replayRotation(issued.record.id, derivedRandom(deriveSecret(TEST_MASTER_KEY, 'rotation-run:v1'), 'rot_other'))).toBeUndefined();
    });
  });

  describe('the scheduler', () => {
    it('starts each due firing once, however many engines look', async () => {
      const issued = await ctx.keys.issue(ADMIN, { owner: 'batch', purpose: 'api', env: 'live', scopes: [], labels: { team: 'data' } });
      const other = await ctx.keys.issue(ADMIN, { owner: 'batch', purpose: 'api', env: 'live', scopes: [], labels: { team: 'web' } });
      await ctx.rotationPolicies.put(policyAuthor(ctx), 'data-keys', {
        name: 'data-keys',
        target: { keys: { labels: { team: 'data' } } },
        schedule: { every: '7d' },
        overlap: '1h',
        connector: { type: 'keysmith-key' },
      });
      expect(await ctx.rotation.scheduleDue()).toBe(0);
      ctx.clock.advance(7 * 86_400_000);
      const twin = secondEngine(ctx);
      const started = await Promise.all([ctx.rotation.scheduleDue(), twin.scheduleDue(), ctx.rotation.scheduleDue()]);
      expect(started.reduce((sum, n) => sum + n, 0)).toBe(1);
      expect(await ctx.rotation.scheduleDue()).toBe(0);
      await twin.stop();
      const runs = (await ctx.rotation.list({})).data;
      expect(runs).toHaveLength(1);
      expect(runs[0]).toMatchObject({ trigger: 'schedule', target: { kind: 'key', id: issued.record.id }, scheduledFor: new Date(Date.parse(issued.record.createdAt) + 7 * 86_400_000).toISOString() });
      expect(runs.some((run) => run.target.id === other.record.id)).toBe(false);
    });
  });
});
