/**
 * Rotation runs through the built CLI and real server processes: `rotate key --wait` and the
 * run commands; a server killed with `kill -9` during a run's test step, whose run the restarted
 * server finishes (the fake vendor ends with exactly the key the vault calls current); and two
 * servers on one PostgreSQL database whose schedulers start each due run exactly once.
 */
import { join } from 'node:path';
import { mkdirSync, writeFileSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, ensureBuilt, freshDatabase, makeTempDir, removeTempDirs, startServer, stopAll, waitFor, ISSUED_KEY_RE } from './support.js';
import { startFakeVendor, type FakeVendor } from '../support/fake-vendor.js';
import { startHealthEndpoint, vendorAccepts, vendorSettings, type HealthEndpoint } from '../support/rotation.js';

/** Quick engine timings, so runs, retries and leases take moments, not minutes. */
const FAST_ENGINE = {
  KEYSMITH_ROTATION_TICK_MS: '100',
  KEYSMITH_ROTATION_LEASE_MS: '1500',
  KEYSMITH_ROTATION_RETRY_MS: '100',
  KEYSMITH_ROTATION_MAX_BACKOFF_MS: '500',
  KEYSMITH_ROTATION_CHECK_INTERVAL_MS: '50',
  KEYSMITH_ROTATION_TRAFFIC_CHECK_MS: '200',
  KEYSMITH_ROTATION_SCHEDULE_MS: '200',
};

let vendor: FakeVendor;
let health: HealthEndpoint;

beforeAll(async () => {
  ensureBuilt();
  vendor = await startFakeVendor();
  health = await startHealthEndpoint();
});

afterAll(async () => {
  await stopAll();
  await vendor.close();
  await health.close();
  removeTempDirs();
});

describe('rotation runs from the CLI', { timeout: 120_000 }, () => {
  it('rotates a key with --wait, shows the run, its figures, and refuses what it must', async () => {
    const server = await startServer(join(makeTempDir('runs'), 'data'), [], FAST_ENGINE);
    const created = await server.cli(['keys', 'create', '--owner', 'checkout', '--purpose', 'api', '--json']);
    expect(created.code, created.stderr).toBe(0);
    const { id, key } = created.json() as { id: string; key: string };

    const rotated = await server.cli(['rotate', 'key', id, '--overlap', '1h', '--reason', 'leak', '--wait', '--json']);
    expect(rotated.code, rotated.stderr).toBe(0);
    const run = rotated.json();
    expect(run).toMatchObject({ status: 'running', trigger: 'manual', reason: 'leak', target: { kind: 'key', id }, promotedAt: expect.any(String) });
    expect(rotated.stdout.match(ISSUED_KEY_RE)).toBeNull();
    // The old key still works through the overlap (and, being in use, is not revoked yet); the new one works.
    expect((await server.cli(['keys', 'verify', key, '--json'])).json()).toMatchObject({ valid: true, rotation: { replacedBy: run.newCredential.vendorId } });
    const newKey = (await server.cli(['secrets', 'get', run.deliveredTo, '--json'])).json().value as string;
    expect((await server.cli(['keys', 'verify', newKey, '--json'])).json()).toMatchObject({ valid: true, keyId: run.newCredential.vendorId });

    const shown = await server.cli(['rotation', 'show', run.id]);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/Timeline:/);
    expect(shown.stdout).toMatch(/\bcreate\s+ok\b/);
    expect(shown.stdout).toContain(run.newCredential.vendorId);
    expect(shown.stdout.match(ISSUED_KEY_RE)).toBeNull();
    const listed = (await server.cli(['rotation', 'runs', '--status', 'running', '--json'])).json();
    expect(listed.data.map((item: { id: string }) => item.id)).toEqual([run.id]);
    const stats = (await server.cli(['rotation', 'stats', '--json'])).json();
    expect(stats).toMatchObject({ runs: { running: 1 }, medianSecondsToRotate: { manual: expect.any(Number) } });
    expect((await server.cli(['rotation', 'stats'])).stdout).toContain('median time to rotate (manual)');

    const again = await server.cli(['rotate', 'key', id, '--json']);
    expect(again.code).toBe(1);
    expect(again.errorJson().error.code).toBe('ERR_ROTATION_IN_PROGRESS');
    expect((await server.cli(['rotation', 'rollback', run.id, '--json'])).code).toBe(1);
    expect((await server.cli(['rotation', 'show', 'rot_bad', '--json'])).code).toBe(2);
    expect((await server.cli(['rotation', 'runs', '--status', 'sleeping'])).code).toBe(2);
    const noPolicy = await server.cli(['rotate', 'secret', 'nothing/here', '--json']);
    expect(noPolicy.code).toBe(1);
    expect(noPolicy.errorJson().error.code).toBe('ERR_ROTATION_NO_POLICY');
    expect((await server.cli(['rotate', 'key'])).code).toBe(2);
  });
});

/**
 * After the restart, the health endpoint answers `afterRestart` to every probe, so exactly one
 * outcome is right: 200 → the interrupted test step passes when run again and the run is done;
 * 503 → it fails before promote, so the new credential is discarded (revoked at the vendor) and
 * the run fails with the old credential still current.
 */
const CRASH_CASES = [
  {
    afterRestart: 200,
    status: 'done',
    timeline: [['create', 'ok'], ['set', 'ok'], ['test', 'ok'], ['promote', 'ok'], ['gate', 'ok'], ['finish', 'revoked old']],
  },
  {
    afterRestart: 503,
    status: 'failed',
    timeline: [['create', 'ok'], ['set', 'ok'], ['test', 'failed'], ['discard', 'ok'], ['finish', 'revoked new']],
  },
] as const;

describe.each(['sqlite', 'postgres'] as const)('a server killed during a run [%s]', { timeout: 120_000 }, (dialect) => {
  it.each(CRASH_CASES)('resumes the run on restart (health $afterRestart → $status); the vendor ends with exactly the key the vault calls current', async ({ afterRestart, status, timeline }) => {
    const dataDir = join(makeTempDir('crash'), 'data');
    const database = dialect === 'postgres' ? await freshDatabase() : undefined;
    const args = database ? ['--database', database.url] : [];
    // The operator's configuration file in the data directory lets runs reach the fake vendor and health endpoint.
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    writeFileSync(join(dataDir, 'keysmith.yaml'), 'egress:\n  allow:\n    - "127.0.0.1:*"\n', { mode: 0o600 });
    try {
      let server = await startServer(dataDir, args, FAST_ENGINE);
      for (const key of vendor.activeKeys()) key.revoked = true;
      const seeded = vendor.seedKey();
      expect((await api(server, 'PUT', '/v1/secrets/vendors/acme/admin', { value: vendor.adminToken })).status).toBe(201);
      expect((await api(server, 'PUT', '/v1/secrets/vendors/acme/api-key', { value: seeded.secret, vendorId: seeded.id })).status).toBe(201);
      const policy = {
        name: 'acme',
        target: { secret: 'vendors/acme/api-key' },
        schedule: { every: '30d' },
        overlap: '2s',
        connector: { type: 'http', settings: vendorSettings(vendor) },
        healthChecks: [{ url: health.url, consecutive: 2, within: '10s' }],
      };
      expect((await api(server, 'PUT', '/v1/rotation/policies/acme', { policy })).status).toBe(201);

      // The test step's health probe is held: the server is killed in the middle of it.
      health.answer(200);
      health.hold();
      const started = await api(server, 'POST', '/v1/rotations', { policy: 'acme', reason: 'drill' });
      expect(started.status).toBe(201);
      const runId = started.body.id as string;
      await waitFor('the test step to probe', async () => health.pending, (pending) => pending > 0);
      const atCrash = await api(server, 'GET', `/v1/rotations/${runId}`);
      expect(atCrash.body).toMatchObject({ status: 'running', step: 'test' });
      await server.crash();
      health.answer(afterRestart);
      health.release();

      server = await startServer(dataDir, args, FAST_ENGINE);
      const finished = await waitFor(
        'the run to end and pay its revocation',
        async () => (await api(server, 'GET', `/v1/rotations/${runId}`)).body,
        (run) => run.status !== 'running' && run.revocations.every((revocation: { status: string }) => revocation.status !== 'waiting'),
      );
      health.answer(200);
      expect(finished.status, JSON.stringify(finished.timeline)).toBe(status);
      expect(finished.timeline.map((step: { step: string; outcome: string }) => [step.step, step.outcome])).toEqual(timeline);
      const current = (await api(server, 'GET', '/v1/secrets/vendors/acme/api-key')).body.value as string;
      expect(current === seeded.secret).toBe(status === 'failed');
      expect(vendor.activeKeys().map((key) => key.secret)).toEqual([current]);
      expect(await vendorAccepts(vendor, current)).toBe(true);
      // Exactly one vendor key was made for the run, however often its create ran.
      const made = vendor.keys().filter((key) => key.name === `keysmith-${runId}`);
      expect(made).toHaveLength(1);
      expect(await vendorAccepts(vendor, status === 'done' ? seeded.secret : made[0]!.secret)).toBe(false);
      await server.stop();
    } finally {
      health.answer(200);
      await database?.drop();
    }
  });
});

describe('two servers on one PostgreSQL database', { timeout: 120_000 }, () => {
  it('start each due scheduled run exactly once', async () => {
    const database = await freshDatabase();
    const url = new URL(database.url);
    const db = new pg.Client({ connectionString: database.url });
    try {
      const dataDir = join(makeTempDir('two'), 'data');
      const first = await startServer(dataDir, ['--database', url.toString()], FAST_ENGINE);
      const second = await startServer(dataDir, ['--database', url.toString()], FAST_ENGINE);
      const ids: string[] = [];
      for (let i = 0; i < 8; i += 1) {
        const made = await api(first, 'POST', '/v1/keys', { owner: 'batch', purpose: 'job', env: 'live', scopes: [], labels: { team: 'batch' } });
        expect(made.status).toBe(201);
        ids.push(made.body.id);
      }
      const untouched = await api(first, 'POST', '/v1/keys', { owner: 'batch', purpose: 'job', env: 'live', scopes: [], labels: { team: 'web' } });
      // The keys were made two hours ago, as far as the schedule is concerned: every one is due.
      await db.connect();
      await db.query(`update api_keys set created_at = $1 where owner = 'batch'`, [new Date(Date.now() - 2 * 3_600_000).toISOString()]);
      const policy = { name: 'batch', target: { keys: { labels: { team: 'batch' } } }, schedule: { every: '1h' }, overlap: '30m', connector: { type: 'keysmith-key' } };
      expect((await api(second, 'PUT', '/v1/rotation/policies/batch', { policy })).status).toBe(201);

      const runs = await waitFor(
        'a run per due key, each at its traffic gate',
        async () => (await api(second, 'GET', '/v1/rotations?limit=100')).body.data as Array<{ id: string; target: { id: string }; step: string; trigger: string }>,
        (data) => data.length >= ids.length && data.every((run) => run.step === 'gate'),
      );
      // More ticks change nothing. Waited for, not slept: the scheduler lease has been renewed
      // (a scheduling pass) and every run's traffic gate looked at again, well after that moment.
      const seen = Date.now();
      const leaseAt = async () => Date.parse((await db.query(`select expires_at from leases where name = 'rotation-scheduler'`)).rows[0]?.expires_at ?? '0');
      const firstLease = await leaseAt();
      await waitFor(
        'three more scheduling passes and gate checks',
        async () => ({
          lease: await leaseAt(),
          oldestNextAt: Date.parse((await db.query(`select min(next_at) as at from rotation_runs where status = 'running'`)).rows[0].at),
        }),
        ({ lease, oldestNextAt }) => lease >= firstLease + 3 * Number(FAST_ENGINE.KEYSMITH_ROTATION_SCHEDULE_MS) && oldestNextAt > seen + 3 * Number(FAST_ENGINE.KEYSMITH_ROTATION_TRAFFIC_CHECK_MS),
      );
      const after = (await api(first, 'GET', '/v1/rotations?limit=100')).body.data as typeof runs;
      expect(after).toHaveLength(ids.length);
      expect(after.map((run) => run.target.id).sort()).toEqual([...ids].sort());
      expect(after.every((run) => run.trigger === 'schedule')).toBe(true);
      expect(after.some((run) => run.target.id === untouched.body.id)).toBe(false);
      // Each run made one successor: each old key is superseded once, and there are as many new keys as runs.
      const successors = await db.query(`select replaces, count(*)::int as n from api_keys where replaces is not null group by replaces`);
      expect(successors.rows.map((row) => row.replaces).sort()).toEqual([...ids].sort());
      expect(successors.rows.every((row) => row.n === 1)).toBe(true);
      const creates = await db.query(`select run_id, count(*)::int as n from rotation_run_steps where step = 'create' group by run_id`);
      expect(creates.rows).toHaveLength(ids.length);
      expect(creates.rows.every((row) => row.n === 1)).toBe(true);
      await first.stop();
      await second.stop();
    } finally {
      await db.end().catch(() => undefined);
      await database.drop();
    }
  });
});
