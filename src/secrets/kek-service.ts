/**
 * Key-encryption key versions and the re-wrap job. The versions of the provider in use are
 * rows in `kek_versions`; new writes use the highest. After a rotation a background job moves
 * every data key to the newest version: it unwraps and wraps data keys only, never opening a
 * value. Its state is the data itself (rows still under an older version), so it resumes after
 * a restart, and several servers running it at once only repeat work: each row is updated on
 * the condition that it still holds the version it was read with.
 */
import type { Kysely, Transaction } from 'kysely';
import { type ActorContext } from '../audit/index.js';
import type { AuditLog } from '../audit/index.js';
import { rewrapEnvelope, ENVELOPE_ALG, ENVELOPE_FORMAT, type Envelope, type KekProvider } from '../crypto/index.js';
import type { Database, StoreDialect, SecretVersionsTable } from '../store/index.js';
import type { Clock } from '../shared/clock.js';
import { AppError, isAppError } from '../shared/errors.js';
import { valueAad } from './secret-codec.js';
import { repeatEvery } from '../shared/repeat.js';

export interface KekServiceDeps {
  readonly db: Kysely<Database>;
  /** The audit log every change is written to, in the change's transaction. */
  readonly audit: AuditLog;
  readonly clock: Clock;
  readonly kek: KekProvider;
  /** On PostgreSQL, writers share-lock the KEK version they seal under, so retire cannot miss them. */
  readonly dialect: StoreDialect;
  /** Data keys re-wrapped per transaction. */
  readonly rewrapBatch?: number;
  /** How often a server looks for data keys left under an older version (another server rotated). */
  readonly rewrapCheckMs?: number;
}

export interface KekVersionStatus {
  readonly version: number;
  readonly state: 'active' | 'retired';
  readonly createdAt: string;
  readonly retiredAt: string | null;
  readonly dataKeys: number;
}

export interface KekStatus {
  readonly provider: string;
  readonly currentVersion: number;
  readonly versions: KekVersionStatus[];
  readonly rewrap: { running: boolean; toVersion: number; total: number; remaining: number };
}

type Executor = Kysely<Database> | Transaction<Database>;

/** The row fields an envelope is rebuilt from. */
export type EnvelopeRow = Pick<
  SecretVersionsTable,
  'secret_id' | 'version' | 'value_type' | 'envelope_format' | 'alg' | 'kek_id' | 'kek_version' | 'wrapped_key' | 'sealed'
>;

export function envelopeOf(row: EnvelopeRow): Envelope {
  return {
    format: row.envelope_format,
    alg: row.alg,
    kekId: row.kek_id,
    kekVersion: row.kek_version,
    wrappedKey: Buffer.from(row.wrapped_key ?? '', 'base64'),
    sealed: Buffer.from(row.sealed ?? '', 'base64'),
  };
}

export class KekService {
  readonly #deps: KekServiceDeps;
  readonly #batch: number;
  #running: Promise<void> | undefined;
  #stopTimer: (() => void) | undefined;
  #stopped = false;
  readonly #retiredListeners: Array<() => void> = [];

  constructor(deps: KekServiceDeps) {
    this.#deps = deps;
    this.#batch = deps.rewrapBatch ?? 500;
  }

  get provider(): KekProvider {
    return this.#deps.kek;
  }

  /** Makes sure version 1 exists for the provider in use, and that its current version is usable. */
  async initialise(): Promise<void> {
    const { db, kek, clock } = this.#deps;
    const existing = await this.currentVersion(db);
    if (existing === 0) {
      await kek.ensureVersion(1);
      await db
        .insertInto('kek_versions')
        .values({ provider: kek.id, version: 1, state: 'active', created_at: new Date(clock.now()).toISOString(), retired_at: null })
        .onConflict((oc) => oc.columns(['provider', 'version']).doNothing())
        .execute();
    } else {
      await kek.ensureVersion(existing);
    }
  }

  /** The version new writes use: the highest one of the provider. */
  async currentVersion(executor: Executor): Promise<number> {
    const row = await executor
      .selectFrom('kek_versions')
      .select((eb) => eb.fn.max('version').as('version'))
      .where('provider', '=', this.#deps.kek.id)
      .executeTakeFirst();
    return Number(row?.version ?? 0);
  }

  /**
   * The version a write inside `trx` seals under. Where writers run side by side the version's row
   * is share-locked until the write commits, so a concurrent `retire` (which locks the row for
   * update before it counts data keys) waits for the write and counts it.
   */
  async versionForWrite(trx: Transaction<Database>): Promise<number> {
    const query = trx.selectFrom('kek_versions').select('version').where('provider', '=', this.#deps.kek.id).orderBy('version', 'desc').limit(1);
    const row = await this.#deps.dialect.lockForShare(query).executeTakeFirst();
    return Number(row?.version ?? 0);
  }

  /** Called after a version is retired (the vault drops cached rows that may name it). */
  onRetired(listener: () => void): void {
    this.#retiredListeners.push(listener);
  }

  async status(): Promise<KekStatus> {
    const { db, kek } = this.#deps;
    const versions = await db.selectFrom('kek_versions').selectAll().where('provider', '=', kek.id).orderBy('version', 'asc').execute();
    const counts = await db
      .selectFrom('secret_versions')
      .select(['kek_version', (eb) => eb.fn.countAll<number>().as('n')])
      .where('kek_id', '=', kek.id)
      .where('wrapped_key', 'is not', null)
      .groupBy('kek_version')
      .execute();
    const byVersion = new Map(counts.map((row) => [Number(row.kek_version), Number(row.n)]));
    const current = versions.reduce((max, row) => Math.max(max, Number(row.version)), 0);
    let total = 0;
    let remaining = 0;
    for (const [version, n] of byVersion) {
      total += n;
      if (version < current) remaining += n;
    }
    return {
      provider: kek.id,
      currentVersion: current,
      versions: versions.map((row) => ({
        version: Number(row.version),
        state: row.state,
        createdAt: row.created_at,
        retiredAt: row.retired_at,
        dataKeys: byVersion.get(Number(row.version)) ?? 0,
      })),
      rewrap: { running: this.#running !== undefined, toVersion: current, total, remaining },
    };
  }

  /** Adds a KEK version that new writes use at once, and starts moving data keys to it. */
  async rotate(ctx: ActorContext): Promise<KekStatus> {
    const { db, kek, clock } = this.#deps;
    const next = (await this.currentVersion(db)) + 1;
    await kek.ensureVersion(next);
    const now = new Date(clock.now()).toISOString();
    await db.transaction().execute(async (trx) => {
      // The primary key refuses a second server rotating to the same number at the same time.
      await trx.insertInto('kek_versions').values({ provider: kek.id, version: next, state: 'active', created_at: now, retired_at: null }).execute();
      await this.#deps.audit.append(trx, ctx, { action: 'kek.rotated', target: `kek:${kek.id}`, data: { provider: kek.id, version: next } }, now);
    });
    // In the background: a failure is left for the next check (status shows what remains), never an unhandled rejection.
    this.kick().catch(() => undefined);
    return this.status();
  }

  /** Marks a version retired; refused for the current version or while any data key needs it. */
  async retire(ctx: ActorContext, version: number): Promise<KekStatus> {
    const { db, kek, clock } = this.#deps;
    const now = new Date(clock.now()).toISOString();
    // Versions are 32-bit integers in the database: a larger number names none (and must not reach a query).
    if (version > 2_147_483_647) throw new AppError('ERR_KEK_VERSION_NOT_FOUND', `${kek.id} has no key-encryption key version ${version}`);
    await db.transaction().execute(async (trx) => {
      const query = trx.selectFrom('kek_versions').selectAll().where('provider', '=', kek.id).where('version', '=', version);
      const row = await this.#deps.dialect.lockForUpdate(query).executeTakeFirst();
      if (row === undefined) throw new AppError('ERR_KEK_VERSION_NOT_FOUND', `${kek.id} has no key-encryption key version ${version}`);
      if (version === (await this.currentVersion(trx))) {
        throw new AppError('ERR_KEK_VERSION_CURRENT', `version ${version} is the current version; rotate first, then retire it once re-wrapping is done`);
      }
      if (row.state === 'retired') return;
      const inUse = await trx
        .selectFrom('secret_versions')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('kek_id', '=', kek.id)
        .where('kek_version', '=', version)
        .where('wrapped_key', 'is not', null)
        .executeTakeFirst();
      const n = Number(inUse?.n ?? 0);
      if (n > 0) throw new AppError('ERR_KEK_VERSION_IN_USE', `${n} data key(s) are still wrapped under version ${version}; wait for the re-wrap to finish (keysmith kek status)`);
      await trx.updateTable('kek_versions').set({ state: 'retired', retired_at: now }).where('provider', '=', kek.id).where('version', '=', version).execute();
      await this.#deps.audit.append(trx, ctx, { action: 'kek.retired', target: `kek:${kek.id}`, data: { provider: kek.id, version } }, now);
    });
    for (const listener of this.#retiredListeners) listener();
    return this.status();
  }

  /** Starts the re-wrap job unless it is running; resolves when this run ends. */
  kick(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    this.#running ??= this.#rewrapAll().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  /** Runs the job now if anything is left, and checks again on a timer. */
  start(): void {
    this.#stopped = false;
    this.kick().catch(() => undefined);
    this.#stopTimer = repeatEvery(this.#deps.rewrapCheckMs ?? 30_000, () => this.kick());
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#stopTimer?.();
    this.#stopTimer = undefined;
    await this.#running?.catch(() => undefined);
  }

  async #rewrapAll(): Promise<void> {
    const { db, kek } = this.#deps;
    // One pass in key order: a row that cannot be re-wrapped (unknown format, a data key that
    // does not unwrap) is passed over, stays under its version (so that version cannot be
    // retired) and does not hold up the rows after it.
    let after: { secretId: string; version: number } | undefined;
    for (;;) {
      if (this.#stopped) return;
      const target = await this.currentVersion(db);
      let query = db
        .selectFrom('secret_versions')
        .select(['secret_id', 'version', 'value_type', 'envelope_format', 'alg', 'kek_id', 'kek_version', 'wrapped_key', 'sealed'])
        .where('kek_id', '=', kek.id)
        .where('kek_version', '<', target)
        .where('wrapped_key', 'is not', null);
      if (after !== undefined) {
        const { secretId, version } = after;
        query = query.where((eb) => eb.or([eb('secret_id', '>', secretId), eb.and([eb('secret_id', '=', secretId), eb('version', '>', version)])]));
      }
      const rows = await query.orderBy('secret_id').orderBy('version').limit(this.#batch).execute();
      if (rows.length === 0) break;
      const last = rows[rows.length - 1]!;
      after = { secretId: last.secret_id, version: Number(last.version) };
      const updates: Array<{ row: EnvelopeRow; wrapped: string }> = [];
      let skipped = 0;
      for (const row of rows) {
        if (row.envelope_format !== ENVELOPE_FORMAT || row.alg !== ENVELOPE_ALG) {
          skipped += 1;
          continue;
        }
        try {
          const next = await rewrapEnvelope(kek, envelopeOf(row), target, valueAad(row.secret_id, row.version, row.value_type));
          updates.push({ row, wrapped: next.wrappedKey.toString('base64') });
        } catch (error) {
          if (!isAppError(error) || error.code !== 'ERR_DECRYPTION_FAILED') throw error;
          skipped += 1;
        }
      }
      // A batch with nothing to move writes nothing (the periodic check must not fill the log).
      if (updates.length > 0) await this.#apply(updates, target, skipped);
      // Give requests a turn: on SQLite every statement runs on the main thread.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** One batch and its audit event, in one transaction. */
  async #apply(updates: Array<{ row: EnvelopeRow; wrapped: string }>, target: number, skipped: number): Promise<void> {
    const { db, kek, clock } = this.#deps;
    const now = new Date(clock.now()).toISOString();
    await db.transaction().execute(async (trx) => {
      for (const { row, wrapped } of updates) {
        await trx
          .updateTable('secret_versions')
          .set({ wrapped_key: wrapped, kek_version: target })
          .where('secret_id', '=', row.secret_id)
          .where('version', '=', row.version)
          .where('kek_version', '=', row.kek_version)
          .where('wrapped_key', '=', row.wrapped_key)
          .execute();
      }
      const data = { provider: kek.id, toVersion: target, dataKeys: updates.length, ...(skipped > 0 ? { skipped } : {}) };
      await this.#deps.audit.append(trx, { actor: 'system' }, { action: 'kek.rewrapped', target: `kek:${kek.id}`, data }, now);
    });
  }
}
