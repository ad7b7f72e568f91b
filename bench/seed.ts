/**
 * Seeds a fresh data directory with N service keys for the verify benchmark.
 *
 * Keys are issued through `KeyService.issue` (one transaction and one audit event each) while
 * that is fast enough; a timed probe of the first keys projects the cost of the rest and, if
 * the projection is over the budget, the remainder is written in bulk: rows in the exact format
 * of `KeyService#insert` (HMAC bound to the key id, via the same hasher and key formatter),
 * inserted in batched transactions. Bulk rows have no audit events, which is fine for a bench.
 */
import { performance } from 'node:perf_hooks';
import { resolveConfig } from '../src/app/config.js';
import { initialise } from '../src/app/init.js';
import { loadMasterKey } from '../src/app/data-dir.js';
import { openServices } from '../src/app/services.js';
import { createKeyHasher, secureRandom } from '../src/crypto/index.js';
import { DEFAULT_PREFIX } from '../src/keys/key-format.js';
import { newKeyRow } from '../src/keys/index.js';
import type { ApiKeysTable } from '../src/store/index.js';

export interface SeedOptions {
  readonly dataDir: string;
  readonly keys: number;
  /** How many of the keys to revoke through `KeyService.revoke`. */
  readonly revoke: number;
  /** Keys issued one by one to time `issue` before deciding (default 1000). */
  readonly probe?: number;
  /** Longest acceptable projected time for issuing every key one by one (default 60 s). */
  readonly budgetMs?: number;
  readonly log?: (line: string) => void;
}

export interface SeededKey {
  readonly id: string;
  readonly key: string;
}

export interface SeedResult {
  readonly mode: 'issue' | 'issue+bulk';
  readonly issued: number;
  readonly bulk: number;
  /** Measured per-key cost of `KeyService.issue`, in ms. */
  readonly issueMsPerKey: number;
  readonly projectedIssueAllMs: number;
  readonly seedMs: number;
  readonly revokeMs: number;
  /** Every key that is still valid. */
  readonly valid: SeededKey[];
  readonly revoked: SeededKey[];
}

const OWNERS = 64;
const SCOPES = [['orders:read'], ['orders:read', 'orders:write'], ['billing:read'], ['inventory:*']];
const BULK_BATCH = 500;
const TTL = '30d';

export async function seed(options: SeedOptions): Promise<SeedResult> {
  const log = options.log ?? (() => undefined);
  const probe = Math.min(options.probe ?? 1000, options.keys);
  const budgetMs = options.budgetMs ?? 60_000;
  const config = resolveConfig({ data: options.dataDir, logLevel: 'silent' }, {});
  await initialise(config);
  const services = await openServices(config);
  const all: SeededKey[] = [];
  const started = performance.now();
  let issued = 0;
  let bulk = 0;
  let issueMsPerKey = 0;
  let projected = 0;
  let revokeMs = 0;
  try {
    const ctx = { actor: 'bench' };
    const issueOne = async (i: number) => {
      const { key, record } = await services.keys.issue(ctx, {
        owner: `bench-team-${i % OWNERS}`,
        purpose: 'verify benchmark',
        scopes: SCOPES[i % SCOPES.length]!,
        ttl: TTL,
      });
      all.push({ id: record.id, key });
    };
    const probeStarted = performance.now();
    for (let i = 0; i < probe; i++) await issueOne(i);
    issued = probe;
    issueMsPerKey = probe > 0 ? (performance.now() - probeStarted) / probe : 0;
    projected = issueMsPerKey * options.keys;
    const useBulk = projected > budgetMs;
    log(
      `issue(): ${issueMsPerKey.toFixed(3)} ms/key over ${probe} keys → ${(projected / 1000).toFixed(1)} s projected for ${options.keys}` +
        (useBulk ? `; over the ${budgetMs / 1000} s budget, writing the remaining ${options.keys - probe} rows in bulk` : '; issuing all one by one'),
    );
    if (!useBulk) {
      for (let i = probe; i < options.keys; i++) await issueOne(i);
      issued = options.keys;
    } else {
      bulk = await bulkInsert(services.store.db, options.dataDir, probe, options.keys, all);
    }
    const revokeStarted = performance.now();
    const revoked = pickRevoked(all, options.revoke);
    for (const entry of revoked) await services.keys.revoke(ctx, entry.id, 'bench');
    revokeMs = performance.now() - revokeStarted;
    const revokedIds = new Set(revoked.map((entry) => entry.id));
    return {
      mode: bulk > 0 ? 'issue+bulk' : 'issue',
      issued,
      bulk,
      issueMsPerKey,
      projectedIssueAllMs: projected,
      seedMs: performance.now() - started,
      revokeMs,
      valid: all.filter((entry) => !revokedIds.has(entry.id)),
      revoked,
    };
  } finally {
    await services.close();
  }
}

/** Writes keys [from, to) as api_keys rows in batched transactions; returns how many. */
async function bulkInsert(
  db: Awaited<ReturnType<typeof openServices>>['store']['db'],
  dataDir: string,
  from: number,
  to: number,
  out: SeededKey[],
): Promise<number> {
  const hasher = createKeyHasher(loadMasterKey(dataDir, {}));
  const expiresAt = new Date(Date.now() + 30 * 86_400_000).toISOString();
  let written = 0;
  for (let start = from; start < to; start += BULK_BATCH) {
    const now = new Date().toISOString();
    const rows: ApiKeysTable[] = [];
    for (let i = start; i < Math.min(start + BULK_BATCH, to); i++) {
      const { key, row } = newKeyRow(
        {
          kind: 'service',
          prefix: DEFAULT_PREFIX,
          env: 'live',
          owner: `bench-team-${i % OWNERS}`,
          purpose: 'verify benchmark',
          scopes: JSON.stringify(SCOPES[i % SCOPES.length]),
          ip_allowlist: null,
          rate_limit_limit: null,
          rate_limit_window_ms: null,
        },
        { expiresAt, createdAt: now, createdBy: 'bench' },
        { hasher, random: secureRandom },
      );
      rows.push(row);
      const id = row.id;
      out.push({ id, key });
    }
    await db.transaction().execute(async (trx) => {
      await trx.insertInto('api_keys').values(rows).execute();
    });
    written += rows.length;
  }
  return written;
}

/** Spreads the revoked keys evenly over the issued ones (both issue() and bulk rows). */
function pickRevoked(all: readonly SeededKey[], count: number): SeededKey[] {
  const n = Math.min(count, all.length);
  if (n === 0) return [];
  const step = all.length / n;
  const picked: SeededKey[] = [];
  for (let i = 0; i < n; i++) picked.push(all[Math.floor(i * step + step / 2)]!);
  return picked;
}
