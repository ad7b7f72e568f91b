/**
 * `npm run bench:incident`: break-glass mass revocation and rotation on SQLite.
 *
 * 1. Initialises a temporary data directory and writes --keys service keys (env live) and
 *    --rotate keys (env test), each with a label, in bulk: rows minted by `newKeyRow` (the real
 *    key format and HMAC), created a millisecond apart as keys issued over time are, inserted in
 *    batched transactions, not timed.
 * 2. Verifies a sample of the live keys, so they sit in the verify cache.
 * 3. Baseline: a bare batched `UPDATE api_keys SET updated_at = ? WHERE id IN (…)` over the same
 *    live rows, in transactions of the incident's batch size. Then the real thing, timed:
 *    `IncidentService.revoke('env=live')` (plan, every row revoked, one audit event per key,
 *    the incident record, the verify cache dropped). The sample must now answer REVOKED.
 * 4. Baseline: a bare batched INSERT of --rotate prebuilt rows plus one UPDATE per old row (what
 *    a rotation writes, without minting keys, labels or audit), rolled back afterwards. Then
 *    `IncidentService.rotate('env=test,label=team=rotor', overlap 24h)`, timed; a sample of old keys must answer
 *    VALID with rotation info, and their successors VALID.
 * 5. Through the API (--api N, default --keys; 0 skips): a second fresh data directory with N
 *    live keys, revoked by one `POST /v1/incidents` (`env=live`) through Fastify's inject() with
 *    the root token: validation, auth, the service and the JSON answer. Fresh, so it compares
 *    with step 3 on equal terms (the cost of a revoke grows with the audit log; see README).
 *    Same bar as the service.
 * 6. Checks the audit chain, prints the figures and the ratios to the baselines, and PASS/FAIL
 *    against the bars: revoke of 100,000 keys < 2 s, rotate of 10,000 keys < 5 s.
 *
 * Exit code: 0 PASS, 1 FAIL, 2 error or wrong answers.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { resolveConfig } from '../src/app/config.js';
import { initialise } from '../src/app/init.js';
import { loadMasterKey, readRootToken } from '../src/app/data-dir.js';
import { buildServer, createMetrics } from '../src/server/index.js';
import { openServices, type Services } from '../src/app/services.js';
import { createKeyHasher, secureRandom, type KeyHasher } from '../src/crypto/index.js';
import { DEFAULT_REVOKE_BATCH, DEFAULT_ROTATE_BATCH, newKeyRow } from '../src/keys/index.js';
import type { ApiKeysTable } from '../src/store/index.js';

const REVOKE_BAR_MS = 2_000;
const ROTATE_BAR_MS = 5_000;
const SAMPLE = 1_000;

const { values: args } = parseArgs({
  options: {
    keys: { type: 'string', default: '100000' },
    rotate: { type: 'string', default: '10000' },
    api: { type: 'string' },
    json: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  process.stdout.write('npm run bench:incident -- [--keys 100000] [--rotate 10000] [--api N (default --keys; 0 skips)] [--json] [--keep]\n');
  process.exit(0);
}
const opts = { keys: Number(args.keys), rotate: Number(args.rotate), api: Number(args.api ?? args.keys) };
const log = (line: string) => process.stderr.write(`${line}\n`);

interface Seeded {
  readonly id: string;
  readonly key: string;
}

class WrongAnswer extends Error {}

async function bulkKeys(services: Services, hasher: KeyHasher, count: number, env: 'live' | 'test', team: (i: number) => string): Promise<Seeded[]> {
  const out: Seeded[] = [];
  // A millisecond apart, oldest first: keys issued over time sit in the table in creation order.
  const base = Date.now() - 3_600_000 - count;
  const expiresAt = new Date(Date.now() + 30 * 86_400_000).toISOString();
  const perTransaction = 20_000;
  for (let start = 0; start < count; start += perTransaction) {
    const rows: ApiKeysTable[] = [];
    const labels: Array<{ key_id: string; name: string; value: string }> = [];
    for (let i = start; i < Math.min(count, start + perTransaction); i++) {
      const { key, row } = newKeyRow(
        {
          kind: 'service',
          prefix: 'ks',
          env,
          owner: `bench-team-${i % 64}`,
          purpose: 'incident benchmark',
          scopes: JSON.stringify(['orders:read']),
          ip_allowlist: null,
          rate_limit_limit: null,
          rate_limit_window_ms: null,
        },
        { expiresAt, createdAt: new Date(base + i).toISOString(), createdBy: 'bench' },
        { hasher, random: secureRandom },
      );
      rows.push(row);
      labels.push({ key_id: row.id, name: 'team', value: team(i) });
      out.push({ id: row.id, key });
    }
    await services.store.db.transaction().execute(async (trx) => {
      for (let i = 0; i < rows.length; i += 1_000) await trx.insertInto('api_keys').values(rows.slice(i, i + 1_000)).execute();
      for (let i = 0; i < labels.length; i += 1_000) await trx.insertInto('key_labels').values(labels.slice(i, i + 1_000)).execute();
    });
  }
  return out;
}

function sample<T>(all: readonly T[], n: number): T[] {
  const step = Math.max(1, Math.floor(all.length / n));
  const out: T[] = [];
  for (let i = 0; i < all.length && out.length < n; i += step) out.push(all[i]!);
  return out;
}

async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await work();
  return { value, ms: performance.now() - started };
}

/** Revokes `count` fresh live keys with one POST /v1/incidents in a data directory of its own; returns the time. */
async function apiPhase(parent: string, count: number): Promise<number> {
  const config = resolveConfig({ data: join(parent, 'api-data'), logLevel: 'silent' }, {});
  await initialise(config);
  const services = await openServices(config);
  const app = await buildServer({ ...services, metrics: createMetrics({ defaultMetrics: false }) });
  try {
    const keys = await bulkKeys(services, createKeyHasher(loadMasterKey(config.dataDir, {})), count, 'live', () => 'api');
    const keySample = sample(keys, SAMPLE);
    for (const entry of keySample) await services.keys.verify({ key: entry.key });
    const token = readRootToken(config.dataDir);
    const revoke = await timed(() =>
      app.inject({
        method: 'POST',
        url: '/v1/incidents',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        payload: JSON.stringify({ action: 'revoke', select: 'env=live', reason: 'bench: through the API' }),
      }),
    );
    const answer = revoke.value.json() as { incident?: { keyCount: number } };
    if (revoke.value.statusCode !== 201 || answer.incident?.keyCount !== count) throw new WrongAnswer(`API revoke answered ${revoke.value.statusCode}: ${revoke.value.body.slice(0, 200)}`);
    log(`API revoke: ${count} keys in ${revoke.ms.toFixed(0)} ms`);
    for (const entry of keySample) {
      const outcome = await services.keys.verify({ key: entry.key });
      if (outcome.code !== 'REVOKED') throw new WrongAnswer(`key ${entry.id} revoked through the API answered ${outcome.code}`);
    }
    return revoke.ms;
  } finally {
    await app.close();
    await services.close();
  }
}

async function main(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'keysmith-bench-incident-'));
  const config = resolveConfig({ data: join(dir, 'data'), logLevel: 'silent' }, {});
  await initialise(config);
  const services = await openServices(config);
  const ctx = { actor: 'bench' };
  let closed = false;
  try {
    const hasher = createKeyHasher(loadMasterKey(config.dataDir, {}));
    log(`seeding ${opts.keys} live keys and ${opts.rotate} test keys in ${dir} …`);
    const seedStarted = performance.now();
    const live = await bulkKeys(services, hasher, opts.keys, 'live', (i) => `t${i % 16}`);
    const test = await bulkKeys(services, hasher, opts.rotate, 'test', () => 'rotor');
    log(`seeded in ${((performance.now() - seedStarted) / 1000).toFixed(1)} s`);

    // Warm the verify cache: revocation must reach it, not only the database.
    const liveSample = sample(live, SAMPLE);
    for (const entry of liveSample) {
      const outcome = await services.keys.verify({ key: entry.key });
      if (outcome.code !== 'VALID') throw new WrongAnswer(`seeded key ${entry.id} answered ${outcome.code}`);
    }

    // Baseline for revoke: the same rows, the same batches, a bare UPDATE.
    const liveIds = live.map((entry) => entry.id);
    const baselineRevoke = await timed(async () => {
      const now = new Date().toISOString();
      for (let i = 0; i < liveIds.length; i += DEFAULT_REVOKE_BATCH) {
        const ids = liveIds.slice(i, i + DEFAULT_REVOKE_BATCH);
        await services.store.db.transaction().execute((trx) => trx.updateTable('api_keys').set({ updated_at: now }).where('id', 'in', ids).execute());
      }
    });
    log(`baseline: bare batched UPDATE of ${liveIds.length} rows in ${baselineRevoke.ms.toFixed(0)} ms`);

    if (process.env.XP) await (await import('kysely')).sql.raw(process.env.XP).execute(services.store.db);
    const revoke = await timed(() => services.incidents.revoke(ctx, 'env=live', 'bench: mass revocation'));
    const revoked = revoke.value.incident;
    log(`incident revoke: ${revoked.keyCount} keys in ${revoke.ms.toFixed(0)} ms (${revoked.id})`);
    if (revoked.keyCount !== opts.keys || revoked.status !== 'done') throw new WrongAnswer(`revoke reported ${revoked.keyCount} keys, status ${revoked.status}`);
    for (const entry of liveSample) {
      const outcome = await services.keys.verify({ key: entry.key });
      if (outcome.code !== 'REVOKED') throw new WrongAnswer(`revoked key ${entry.id} answered ${outcome.code}`);
    }

    // Baseline for rotate: what a rotation writes, bare: prebuilt rows inserted, one UPDATE per old row; rolled back.
    const testIds = test.map((entry) => entry.id);
    const template = await services.store.db.selectFrom('api_keys').selectAll().where('id', '=', testIds[0]!).executeTakeFirstOrThrow();
    const prebuilt = testIds.map(() => newKeyRow(template, { expiresAt: template.expires_at, createdAt: new Date().toISOString(), createdBy: 'bench' }, { hasher, random: secureRandom }).row);
    const baselineRotate = await timed(async () => {
      const now = new Date().toISOString();
      for (let i = 0; i < testIds.length; i += DEFAULT_ROTATE_BATCH) {
        const olds = testIds.slice(i, i + DEFAULT_ROTATE_BATCH);
        const rows = prebuilt.slice(i, i + DEFAULT_ROTATE_BATCH);
        await services.store.db.transaction().execute(async (trx) => {
          await trx.insertInto('api_keys').values(rows).execute();
          for (const [j, old] of olds.entries()) {
            await trx.updateTable('api_keys').set({ replaced_by: rows[j]!.id, grace_ends_at: now, updated_at: now }).where('id', '=', old).execute();
          }
        });
      }
    });
    await services.store.db.transaction().execute(async (trx) => {
      await trx.updateTable('api_keys').set({ replaced_by: null, grace_ends_at: null }).where('env', '=', 'test').execute();
      for (let i = 0; i < prebuilt.length; i += 5_000) await trx.deleteFrom('api_keys').where('id', 'in', prebuilt.slice(i, i + 5_000).map((row) => row.id)).execute();
    });
    log(`baseline: bare batched INSERT + UPDATE of ${testIds.length} rotations in ${baselineRotate.ms.toFixed(0)} ms`);

    const testSample = sample(test, SAMPLE);
    for (const entry of testSample) await services.keys.verify({ key: entry.key });
    const rotate = await timed(() => services.incidents.rotate(ctx, 'env=test,label=team=rotor', 'bench: mass rotation', '24h'));
    const rotated = rotate.value;
    log(`incident rotate: ${rotated.incident.keyCount} keys in ${rotate.ms.toFixed(0)} ms (${rotated.incident.id})`);
    if (rotated.keys.length !== opts.rotate) throw new WrongAnswer(`rotate returned ${rotated.keys.length} keys`);
    const successors = new Map(rotated.keys.map((k) => [k.replaces, k]));
    for (const entry of testSample) {
      const old = await services.keys.verify({ key: entry.key });
      const next = successors.get(entry.id);
      if (old.code !== 'VALID' || old.rotation?.replacedBy !== next?.id) throw new WrongAnswer(`rotated key ${entry.id} answered ${old.code} without rotation info`);
      const fresh = await services.keys.verify({ key: next!.key });
      if (fresh.code !== 'VALID') throw new WrongAnswer(`successor ${next!.id} answered ${fresh.code}`);
    }

    const chain = await timed(() => services.audit.verify(services.store.db));
    if (!chain.value.ok) throw new WrongAnswer(`audit chain broken: ${chain.value.problem?.message}`);
    const revokedEvents = await services.store.db
      .selectFrom('audit_events')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('action', '=', 'key.revoked')
      .executeTakeFirstOrThrow();
    if (Number(revokedEvents.n) !== opts.keys) throw new WrongAnswer(`${revokedEvents.n} key.revoked events for ${opts.keys} keys`);
    await services.close();
    closed = true;
    const apiMs = opts.api > 0 ? await apiPhase(dir, opts.api) : undefined;

    const revokeBar = opts.keys >= 100_000 ? REVOKE_BAR_MS : (REVOKE_BAR_MS * opts.keys) / 100_000;
    const apiBar = opts.api >= 100_000 ? REVOKE_BAR_MS : (REVOKE_BAR_MS * opts.api) / 100_000;
    const rotateBar = opts.rotate >= 10_000 ? ROTATE_BAR_MS : (ROTATE_BAR_MS * opts.rotate) / 10_000;
    const result = {
      keys: opts.keys,
      rotateKeys: opts.rotate,
      revokeMs: Math.round(revoke.ms),
      revokeBaselineMs: Math.round(baselineRevoke.ms),
      revokeRatio: Number((revoke.ms / baselineRevoke.ms).toFixed(2)),
      revokeKeysPerSecond: Math.round(opts.keys / (revoke.ms / 1000)),
      revokeBarMs: revokeBar,
      rotateMs: Math.round(rotate.ms),
      rotateBaselineMs: Math.round(baselineRotate.ms),
      rotateRatio: Number((rotate.ms / baselineRotate.ms).toFixed(2)),
      rotateKeysPerSecond: Math.round(opts.rotate / (rotate.ms / 1000)),
      rotateBarMs: rotateBar,
      apiKeys: opts.api,
      apiRevokeMs: apiMs === undefined ? null : Math.round(apiMs),
      apiBarMs: apiBar,
      auditEvents: chain.value.events,
      chainVerifyMs: Math.round(chain.ms),
      pass: revoke.ms < revokeBar && rotate.ms < rotateBar && (apiMs === undefined || apiMs < apiBar),
    };
    if (args.json) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    } else {
      const lines = [
        '',
        `revoke ${opts.keys.toLocaleString('en')} keys: ${result.revokeMs} ms (${result.revokeKeysPerSecond.toLocaleString('en')} keys/s); bare batched UPDATE ${result.revokeBaselineMs} ms; ratio ${result.revokeRatio}×; bar < ${revokeBar} ms: ${revoke.ms < revokeBar ? 'PASS' : 'FAIL'}`,
        `rotate ${opts.rotate.toLocaleString('en')} keys: ${result.rotateMs} ms (${result.rotateKeysPerSecond.toLocaleString('en')} keys/s); bare batched INSERT+UPDATE ${result.rotateBaselineMs} ms; ratio ${result.rotateRatio}×; bar < ${rotateBar} ms: ${rotate.ms < rotateBar ? 'PASS' : 'FAIL'}`,
        ...(apiMs === undefined ? [] : [`revoke ${opts.api.toLocaleString('en')} keys through POST /v1/incidents: ${result.apiRevokeMs} ms; bar < ${result.apiBarMs} ms: ${apiMs < result.apiBarMs ? 'PASS' : 'FAIL'}`]),
        `audit chain: ${result.auditEvents.toLocaleString('en')} events verified in ${result.chainVerifyMs} ms`,
        result.pass ? 'PASS' : 'FAIL',
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    }
    return result.pass ? 0 : 1;
  } finally {
    if (!closed) await services.close();
    if (!args.keep) rmSync(dir, { recursive: true, force: true });
    else log(`kept ${dir}`);
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    log(error instanceof WrongAnswer ? `wrong answer: ${error.message}` : `error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exit(2);
  },
);
