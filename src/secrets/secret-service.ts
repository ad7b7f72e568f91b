/**
 * The secret vault: versioned values at paths, stage labels on versions, check-and-set and
 * idempotent puts, soft delete with a recovery window, destroy and pruning. Every change runs
 * in one transaction with its audit event (never a value in it); on PostgreSQL the secret's
 * row is locked first, so stage moves are atomic and exactly one of two CAS writers wins.
 *
 * Reads are served from a cache of sealed rows (values stay sealed in memory and are opened on
 * each read), kept honest across servers by the audit change feed, and counted per version and
 * reader for `readers`.
 */
import { timingSafeEqual } from 'node:crypto';
import { sql, type Kysely, type Transaction } from 'kysely';
import { ChangeFeed, type ActorContext, type AuditEventInput } from '../audit/index.js';
import type { AuditLog } from '../audit/index.js';
import { openEnvelope, sealEnvelope, type Envelope } from '../crypto/index.js';
import { RESERVED_STAGES } from '../contract/index.js';
import { isUniqueViolation, type Database, type StoreDialect, type SecretsTable, type SecretVersionsTable } from '../store/index.js';
import type { PathGrant } from '../policy/index.js';
import type { Clock } from '../shared/clock.js';
import { parseDuration } from '../shared/duration.js';
import { AppError } from '../shared/errors.js';
import { newKeyIdBody, type RandomBytes } from '../shared/ids.js';
import { decodeValue, encodeValue, valueAad, valueDigest, type SecretValue, type ValueType } from './secret-codec.js';
import { assertSecretPath } from './secret-path.js';
import { envelopeOf, type KekService } from './kek-service.js';
import { ReadTally } from './read-tally.js';
import { repeatEvery } from '../shared/repeat.js';

export interface SecretPolicyConfig {
  readonly defaultMaxVersions: number;
  readonly defaultRecoveryWindowMs: number;
  readonly minRecoveryWindowMs: number;
  readonly maxRecoveryWindowMs: number;
  readonly maxCustomStages: number;
  readonly cacheTtlMs: number;
  readonly cacheMaxEntries: number;
  readonly changePollMs: number;
  readonly readFlushMs: number;
  readonly purgeEveryMs: number;
  /**
   * Keep opened values (and their serialised answers) in the read cache. Worth it only where the
   * process can open every value anyway (the local KEK provider, whose master key is in memory);
   * with an HSM, values stay sealed in memory and each read unwraps its data key in the token.
   */
  readonly cacheOpenedValues: boolean;
}

export const DEFAULT_SECRET_POLICY: SecretPolicyConfig = {
  defaultMaxVersions: 20,
  defaultRecoveryWindowMs: 7 * 86_400_000,
  minRecoveryWindowMs: 86_400_000,
  maxRecoveryWindowMs: 30 * 86_400_000,
  maxCustomStages: 20,
  cacheTtlMs: 10 * 60_000,
  cacheMaxEntries: 100_000,
  changePollMs: 1_000,
  readFlushMs: 5_000,
  purgeEveryMs: 60_000,
  cacheOpenedValues: false,
};

export interface SecretServiceDeps {
  readonly db: Kysely<Database>;
  /** The audit log every change is written to, in the change's transaction. */
  readonly audit: AuditLog;
  readonly dialect: StoreDialect;
  readonly clock: Clock;
  readonly random: RandomBytes;
  readonly kek: KekService;
  /** Keys the MAC that lets an idempotent retry be recognised without keeping the value. */
  readonly digestKey: Uint8Array;
  readonly config?: Partial<SecretPolicyConfig>;
}

export interface PutSecretInput {
  readonly value: SecretValue;
  readonly stage?: 'current' | 'pending' | undefined;
  readonly cas?: number | undefined;
  readonly requestToken?: string | undefined;
  readonly owner?: string | undefined;
  readonly description?: string | undefined;
  readonly labels?: Readonly<Record<string, string>> | undefined;
  readonly expiresAt?: string | null | undefined;
  readonly maxVersions?: number | undefined;
  /** The vendor's id for the credential (rotation connectors); metadata, never secret. */
  readonly vendorId?: string | undefined;
}

export interface PutSecretResult {
  readonly id: string;
  readonly path: string;
  readonly version: number;
  readonly stages: string[];
  readonly created: boolean;
  readonly replayed: boolean;
}

export interface SecretMetadata {
  readonly id: string;
  readonly path: string;
  readonly owner: string;
  readonly description: string;
  readonly labels: Record<string, string>;
  readonly expiresAt: string | null;
  readonly maxVersions: number;
  readonly currentVersion: number | null;
  readonly stages: Record<string, number>;
  readonly createdAt: string;
  readonly createdBy: string;
  readonly updatedAt: string;
  readonly deletedAt: string | null;
  readonly deletionDate: string | null;
}

export interface SecretVersionInfo {
  readonly version: number;
  readonly stages: string[];
  readonly createdAt: string;
  readonly createdBy: string;
  readonly destroyedAt: string | null;
  readonly kekVersion: number;
  readonly vendorId: string | null;
}

export interface SecretReadResult {
  readonly id: string;
  readonly path: string;
  readonly version: number;
  readonly stages: string[];
  readonly value: SecretValue;
  readonly createdAt: string;
}

export interface ReadSelector {
  readonly stage?: string | undefined;
  readonly version?: number | undefined;
}

export interface SecretReaders {
  readonly path: string;
  readonly version: number;
  readonly since: string;
  readonly total: number;
  readonly readers: Array<{ principal: string; reads: number; lastReadAt: string }>;
}

export interface ListSecretsInput {
  readonly prefix?: string | undefined;
  readonly deleted?: boolean | undefined;
  readonly cursor?: string | undefined;
  readonly limit?: number | undefined;
  /** Only paths the caller may see are listed (filtered in the query, so pages stay full). */
  readonly visible?: PathGrant;
}

type VersionRow = SecretVersionsTable;

interface OpenedVersion {
  readonly result: SecretReadResult;
  /** The answer as sent: built once per version while the entry lives. */
  readonly json: string;
}

interface CachedSecret {
  readonly row: SecretsTable;
  readonly stages: Map<string, number>;
  readonly versions: Map<number, VersionRow>;
  /** Only with `cacheOpenedValues`. */
  readonly opened: Map<number, OpenedVersion>;
  readonly loadedAt: number;
}

const RESERVED: ReadonlySet<string> = new Set(RESERVED_STAGES);
/** Versions are 32-bit integers in the database; a larger number names no version (and must not reach a query). */
const MAX_VERSION = 2_147_483_647;

export class SecretService {
  readonly #deps: SecretServiceDeps;
  readonly #config: SecretPolicyConfig;
  readonly reads: ReadTally;
  readonly changes: ChangeFeed;
  readonly #byPath = new Map<string, CachedSecret>();
  readonly #pathById = new Map<string, string>();
  /** Bumped on every invalidation, so a load that raced a change is not cached. */
  #generation = 0;
  #stopPurge: (() => void) | undefined;

  constructor(deps: SecretServiceDeps) {
    this.#deps = deps;
    this.#config = { ...DEFAULT_SECRET_POLICY, ...deps.config };
    this.reads = new ReadTally(deps.db, deps.dialect);
    this.changes = new ChangeFeed(deps.db, 'sec_', (id) => this.#invalidate(id));
    deps.kek.onRetired(() => this.#clearCache());
  }

  get config(): SecretPolicyConfig {
    return this.#config;
  }

  async start(): Promise<void> {
    await this.changes.start(this.#config.changePollMs);
    this.reads.start(this.#config.readFlushMs);
    this.#stopPurge = repeatEvery(this.#config.purgeEveryMs, () => this.purgeDue());
  }

  async stop(): Promise<void> {
    this.changes.stop();
    this.#stopPurge?.();
    this.#stopPurge = undefined;
    await this.reads.stop();
  }

  // ---- writes -------------------------------------------------------------------------------

  async put(ctx: ActorContext, rawPath: string, input: PutSecretInput): Promise<PutSecretResult> {
    const outcome = await this.#put(ctx, rawPath, input);
    // A refused replay is audited, so its transaction commits; the refusal is thrown after.
    if (outcome instanceof AppError) throw outcome;
    return outcome;
  }

  async #put(ctx: ActorContext, rawPath: string, input: PutSecretInput): Promise<PutSecretResult | AppError> {
    const path = assertSecretPath(rawPath);
    const encoded = encodeValue(input.value);
    if (input.expiresAt !== undefined && input.expiresAt !== null) input = { ...input, expiresAt: normaliseTime(input.expiresAt, 'expiresAt') };
    const digest = input.requestToken === undefined ? null : this.#digest(encoded.type, encoded.bytes);
    const kek = this.#deps.kek;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#transaction<PutSecretResult | AppError>(async (trx, now) => {
          let row = await this.#lockByPath(trx, path, now);
          const stages = row ? await stagesOf(trx, row.id) : new Map<string, number>();
          const current = stages.get('current') ?? 0;
          // A retried put is recognised before its cas is checked: the cas it carries was right
          // the first time, and the version that put made is what current is now.
          if (row !== undefined && input.requestToken !== undefined) {
            const earlier = await trx
              .selectFrom('secret_versions')
              .selectAll()
              .where('secret_id', '=', row.id)
              .where('request_token', '=', input.requestToken)
              .executeTakeFirst();
            if (earlier !== undefined) {
              const requestToken = input.requestToken;
              // A request token belongs to the principal that used it. Another principal gets the
              // same refusal whether its value matches or not, so a token is no oracle for guesses.
              if (earlier.created_by !== ctx.actor) {
                const refusal = new AppError('ERR_SECRET_REQUEST_TOKEN_REUSED', `request token "${requestToken}" was already used on ${path} by another caller; choose a new one`);
                return { result: refusal, audit: [replayEvent('secret.put.replay_refused', row.id, path, requestToken, { reason: 'other_principal' })] };
              }
              if (earlier.value_digest === null || digest === null || !sameDigest(earlier.value_digest, digest)) {
                const refusal = new AppError('ERR_SECRET_REQUEST_TOKEN_REUSED', `request token "${requestToken}" was already used for version ${earlier.version} of ${path} with another value`);
                return { result: refusal, audit: [replayEvent('secret.put.replay_refused', row.id, path, requestToken, { reason: 'other_value', version: earlier.version })] };
              }
              const result: PutSecretResult = { id: row.id, path, version: earlier.version, stages: stageNames(stages, earlier.version), created: false, replayed: true };
              return { result, audit: [replayEvent('secret.put.replayed', row.id, path, requestToken, { version: earlier.version })] };
            }
          }
          if (input.cas !== undefined && (input.cas === 0 ? row !== undefined : input.cas !== current)) {
            throw casMismatch(path, input.cas, row === undefined ? null : current);
          }
          const audit: AuditEventInput[] = [];
          const created = row === undefined;
          if (row === undefined) {
            row = await this.#create(trx, ctx, path, input, now);
            audit.push({ action: 'secret.created', target: row.id, data: { path, owner: row.owner } });
          } else {
            row = await this.#updateMetadata(trx, row, input, now, audit);
          }
          const version = row.latest_version + 1;
          const kekVersion = await kek.versionForWrite(trx);
          const envelope = await sealEnvelope(kek.provider, kekVersion, encoded.bytes, valueAad(row.id, version, encoded.type), this.#deps.random);
          await trx
            .insertInto('secret_versions')
            .values(versionRow(row.id, version, encoded.type, envelope, { requestToken: input.requestToken ?? null, digest, at: now, by: ctx.actor, vendorId: input.vendorId ?? null }))
            .execute();
          await trx.updateTable('secrets').set({ latest_version: version, updated_at: now }).where('id', '=', row.id).execute();
          const stage = input.stage ?? 'current';
          const moves: Record<string, number | null> = {};
          if (stage === 'current') {
            if (current !== 0) moves.previous = current;
            moves.current = version;
          } else {
            moves.pending = version;
          }
          await applyStageMoves(trx, row.id, stages, moves);
          const pruned = await this.#prune(trx, row.id, row.max_versions, stages);
          audit.push({
            action: 'secret.version.added',
            target: row.id,
            data: { path, version, stages: stageNames(stages, version), kekVersion, ...(input.requestToken ? { requestToken: input.requestToken } : {}), ...(pruned.length ? { pruned } : {}) },
          });
          return { result: { id: row.id, path, version, stages: stageNames(stages, version), created, replayed: false }, audit, changed: row.id };
        }, ctx);
      } catch (error) {
        // Two creators of one path on PostgreSQL: the unique path makes the second fail; retry
        // once so it sees the secret the first one made (and its CAS check decides).
        if (attempt === 0 && isUniqueViolation(error)) continue;
        throw error;
      }
    }
  }

  /** `pending` → `current`, and the old `current` → `previous`. */
  promote(ctx: ActorContext, path: string, cas?: number): Promise<SecretMetadata> {
    return this.#moveStages(ctx, path, cas, 'secret.promoted', (stages) => {
      const pending = stages.get('pending');
      if (pending === undefined) throw new AppError('ERR_SECRET_NO_PENDING', `${path} has no pending version to promote; put one with stage "pending" first`);
      const current = stages.get('current');
      return { current: pending, pending: null, previous: current !== undefined && current !== pending ? current : stages.get('previous') ?? null };
    });
  }

  /** `previous` → `current`, and the old `current` → `previous`. */
  rollback(ctx: ActorContext, path: string, cas?: number): Promise<SecretMetadata> {
    return this.#moveStages(ctx, path, cas, 'secret.rolled_back', (stages) => {
      const previous = stages.get('previous');
      if (previous === undefined) throw new AppError('ERR_SECRET_NO_PREVIOUS', `${path} has no previous version to roll back to`);
      return { current: previous, previous: stages.get('current') ?? null };
    });
  }

  /**
   * Takes `pending` off `version` (a rotation that failed before promote); a no-op when pending
   * is already elsewhere or gone, so a resumed run can call it again.
   */
  discardPending(ctx: ActorContext, path: string, version: number): Promise<SecretMetadata> {
    return this.#moveStages(ctx, path, undefined, 'secret.pending.discarded', (stages): Record<string, number | null> => (stages.get('pending') === version ? { pending: null } : {}));
  }

  /** Puts a custom stage on a version, or takes it off (`version: null`). */
  moveStage(ctx: ActorContext, path: string, stage: string, version: number | null, cas?: number): Promise<SecretMetadata> {
    if (RESERVED.has(stage)) {
      throw new AppError('ERR_SECRET_STAGE_RESERVED', `"${stage}" is moved by put, promote and rollback; use a custom stage name here`, {
        details: [{ field: 'stage', message: 'reserved stage' }],
      });
    }
    return this.#moveStages(ctx, path, cas, 'secret.stage.moved', (stages) => {
      const customs = [...stages.keys()].filter((name) => !RESERVED.has(name));
      if (version !== null && !stages.has(stage) && customs.length >= this.#config.maxCustomStages) {
        throw new AppError('ERR_SECRET_TOO_MANY_STAGES', `${path} already has ${customs.length} custom stages, the most allowed; move or remove one first`);
      }
      return { [stage]: version };
    });
  }

  async delete(ctx: ActorContext, rawPath: string, recoveryWindow?: string): Promise<SecretMetadata> {
    const path = assertSecretPath(rawPath);
    const windowMs = recoveryWindow === undefined ? this.#config.defaultRecoveryWindowMs : parseDuration(recoveryWindow, 'recoveryWindow');
    if (windowMs < this.#config.minRecoveryWindowMs || windowMs > this.#config.maxRecoveryWindowMs) {
      throw new AppError('ERR_INVALID_REQUEST', 'recoveryWindow must be between 1d and 30d', { details: [{ field: 'recoveryWindow', message: 'between 1d and 30d' }] });
    }
    return this.#transaction(async (trx, now, nowMs) => {
      const row = await this.#mustLock(trx, path, now);
      const deletionDate = new Date(nowMs + windowMs).toISOString();
      await trx.updateTable('secrets').set({ deleted_at: now, deletion_date: deletionDate, updated_at: now }).where('id', '=', row.id).execute();
      const updated = { ...row, deleted_at: now, deletion_date: deletionDate, updated_at: now };
      const audit = [{ action: 'secret.deleted', target: row.id, data: { path, deletionDate } }];
      return { result: toMetadata(updated, await stagesOf(trx, row.id)), audit, changed: row.id };
    }, ctx);
  }

  async restore(ctx: ActorContext, rawPath: string): Promise<SecretMetadata> {
    const path = assertSecretPath(rawPath);
    return this.#transaction(async (trx, now) => {
      const row = await this.#lockByPath(trx, path, now, { includeDeleted: true });
      if (row === undefined) throw notFound(path);
      if (row.deleted_at === null) throw new AppError('ERR_SECRET_NOT_DELETED', `${path} is not scheduled for deletion`);
      await trx.updateTable('secrets').set({ deleted_at: null, deletion_date: null, updated_at: now }).where('id', '=', row.id).execute();
      const updated = { ...row, deleted_at: null, deletion_date: null, updated_at: now };
      return { result: toMetadata(updated, await stagesOf(trx, row.id)), audit: [{ action: 'secret.restored', target: row.id, data: { path } }], changed: row.id };
    }, ctx);
  }

  /** Erases the values of some versions for good; their metadata stays. */
  async destroy(ctx: ActorContext, rawPath: string, versions: readonly number[]): Promise<{ secret: SecretMetadata; versions: SecretVersionInfo[] }> {
    const path = assertSecretPath(rawPath);
    const wanted = [...new Set(versions)].sort((a, b) => a - b);
    return this.#transaction(async (trx, now) => {
      const row = await this.#mustLock(trx, path, now);
      const stages = await stagesOf(trx, row.id);
      for (const version of wanted) assertStorableVersion(path, version);
      const rows = await trx.selectFrom('secret_versions').select(['version', 'destroyed_at']).where('secret_id', '=', row.id).where('version', 'in', wanted).execute();
      const found = new Map(rows.map((r) => [Number(r.version), r]));
      for (const version of wanted) {
        if (!found.has(version)) throw versionNotFound(path, version);
        if (stages.get('current') === version) {
          throw new AppError('ERR_SECRET_VERSION_IS_CURRENT', `version ${version} of ${path} is current; put or roll back to another version first`);
        }
      }
      const fresh = wanted.filter((version) => found.get(version)!.destroyed_at === null);
      if (fresh.length > 0) {
        await trx
          .updateTable('secret_versions')
          .set({ wrapped_key: null, sealed: null, value_digest: null, destroyed_at: now })
          .where('secret_id', '=', row.id)
          .where('version', 'in', fresh)
          .execute();
      }
      const audit = fresh.length > 0 ? [{ action: 'secret.versions.destroyed', target: row.id, data: { path, versions: fresh } }] : [];
      return { result: { secret: toMetadata(row, stages), versions: await versionsOf(trx, row.id, stages) }, audit, changed: row.id };
    }, ctx);
  }

  /** Erases secrets whose recovery window has passed. */
  async purgeDue(): Promise<number> {
    const now = new Date(this.#deps.clock.now()).toISOString();
    const due = await this.#deps.db.selectFrom('secrets').select('path').where('deletion_date', '<=', now).limit(500).execute();
    for (const { path } of due) {
      await this.#transaction(async (trx, nowIso) => {
        await this.#lockByPath(trx, path, nowIso, { includeDeleted: true });
        return { result: undefined, audit: [] };
      }, { actor: 'system' });
    }
    return due.length;
  }

  // ---- reads --------------------------------------------------------------------------------

  /** A value by stage (default `current`) or version; counted for `readers`. */
  async read(ctx: ActorContext, rawPath: string, selector: ReadSelector = {}): Promise<SecretReadResult> {
    const path = assertSecretPath(rawPath);
    return (await this.#open(ctx, path, selector, this.#deps.clock.now())).result;
  }

  /**
   * `read`, serialised as the HTTP answer. Synchronous when the answer is cached (the common
   * case for an application reading its credentials), a promise otherwise.
   */
  readJson(ctx: ActorContext, rawPath: string, selector: ReadSelector = {}): string | Promise<string> {
    const path = assertSecretPath(rawPath);
    return this.peekJson(ctx, path, selector) ?? this.#open(ctx, path, selector, this.#deps.clock.now()).then((opened) => opened.json);
  }

  /**
   * The cached answer for a read of a valid path, counted as a read; `undefined`, with nothing
   * counted and nothing thrown, whenever it is not cached (the caller then reads for real).
   */
  peekJson(ctx: ActorContext, path: string, selector: ReadSelector = {}): string | undefined {
    const nowMs = this.#deps.clock.now();
    const hit = this.#byPath.get(path);
    if (hit === undefined || nowMs - hit.loadedAt >= this.#config.cacheTtlMs) return undefined;
    const version = selector.version ?? hit.stages.get(selector.stage ?? 'current');
    const opened = version === undefined ? undefined : hit.opened.get(version);
    if (opened === undefined) return undefined;
    this.reads.record(hit.row.id, opened.result.version, ctx.actor, nowMs);
    return opened.json;
  }

  async #open(ctx: ActorContext, path: string, selector: ReadSelector, nowMs: number): Promise<OpenedVersion> {
    const secret = await this.#cached(path, nowMs);
    const version = resolveVersion(secret, path, selector);
    let opened = secret.opened.get(version);
    if (opened === undefined) {
      let row = secret.versions.get(version);
      if (row === undefined) {
        const generation = this.#generation;
        row = await this.#deps.db.selectFrom('secret_versions').selectAll().where('secret_id', '=', secret.row.id).where('version', '=', version).executeTakeFirst();
        if (row === undefined) throw versionNotFound(path, version);
        if (generation === this.#generation) secret.versions.set(version, row);
      }
      if (row.destroyed_at !== null || row.sealed === null) throw destroyedError(path, version);
      const bytes = await openEnvelope(this.#deps.kek.provider, envelopeOf(row), valueAad(row.secret_id, version, row.value_type));
      const result: SecretReadResult = {
        id: secret.row.id,
        path,
        version,
        stages: stageNames(secret.stages, version),
        value: decodeValue(row.value_type as ValueType, bytes),
        createdAt: row.created_at,
      };
      opened = { result, json: JSON.stringify(result) };
      if (this.#config.cacheOpenedValues) secret.opened.set(version, opened);
    }
    this.reads.record(secret.row.id, version, ctx.actor, nowMs);
    return opened;
  }

  async versions(rawPath: string): Promise<{ secret: SecretMetadata; versions: SecretVersionInfo[] }> {
    const path = assertSecretPath(rawPath);
    const secret = await this.#load(path, this.#deps.clock.now());
    return { secret: toMetadata(secret.row, secret.stages), versions: await versionsOf(this.#deps.db, secret.row.id, secret.stages) };
  }

  async metadata(rawPath: string): Promise<SecretMetadata> {
    const secret = await this.#load(assertSecretPath(rawPath), this.#deps.clock.now());
    return toMetadata(secret.row, secret.stages);
  }

  async list(input: ListSecretsInput = {}): Promise<{ data: SecretMetadata[]; nextCursor: string | null }> {
    const { db, clock } = this.#deps;
    const now = new Date(clock.now()).toISOString();
    const limit = input.limit ?? 50;
    let query = db.selectFrom('secrets').selectAll().orderBy('path', 'asc').limit(limit + 1);
    if (input.prefix) query = query.where(sql<boolean>`path like ${escapeLike(input.prefix) + '%'} escape '\\'`);
    query = input.deleted ? query.where('deletion_date', '>', now) : query.where('deleted_at', 'is', null);
    if (input.cursor !== undefined) query = query.where('path', '>', decodeCursor(input.cursor));
    const grant = input.visible;
    if (grant !== undefined && !grant.all) {
      if (grant.prefixes.length === 0 && grant.exact.length === 0) return { data: [], nextCursor: null };
      query = query.where((eb) =>
        eb.or([
          ...grant.prefixes.map((prefix) => eb(sql<string>`path`, 'like', sql<string>`${escapeLike(prefix) + '%'} escape '\\'`)),
          ...(grant.exact.length > 0 ? [eb('path', 'in', grant.exact)] : []),
        ]),
      );
    }
    const rows = await query.execute();
    const page = rows.slice(0, limit);
    const stages = await stagesOfMany(db, page.map((row) => row.id));
    return {
      data: page.map((row) => toMetadata(row, stages.get(row.id) ?? new Map())),
      nextCursor: rows.length > limit ? Buffer.from(page[page.length - 1]!.path).toString('base64url') : null,
    };
  }

  /** Who read a version (by stage, default `current`, or number) since a time, with counts. */
  async readers(rawPath: string, selector: ReadSelector, sinceMs: number): Promise<SecretReaders> {
    const path = assertSecretPath(rawPath);
    const secret = await this.#load(path, this.#deps.clock.now());
    const version = resolveVersion(secret, path, selector);
    await this.reads.flush();
    // The longest `since` reaches before any date can be written; no read is older than 1970.
    const from = Math.max(0, sinceMs);
    const since = new Date(from - (from % 60_000)).toISOString();
    const rows = await this.#deps.db
      .selectFrom('secret_reads')
      .select(['principal', (eb) => eb.fn.sum<number>('count').as('reads'), (eb) => eb.fn.max('last_read_at').as('last')])
      .where('secret_id', '=', secret.row.id)
      .where('version', '=', version)
      .where('minute', '>=', since)
      .groupBy('principal')
      .orderBy('principal')
      .execute();
    const readers = rows.map((row) => ({ principal: row.principal, reads: Number(row.reads), lastReadAt: String(row.last) }));
    return { path, version, since, total: readers.reduce((sum, r) => sum + r.reads, 0), readers };
  }

  // ---- internals ----------------------------------------------------------------------------

  /** Runs a change and its audit events in one transaction, then drops the stale cache entry. */
  async #transaction<T>(
    work: (trx: Transaction<Database>, now: string, nowMs: number) => Promise<{ result: T; audit: readonly AuditEventInput[]; changed?: string }>,
    ctx: ActorContext,
  ): Promise<T> {
    const nowMs = this.#deps.clock.now();
    const now = new Date(nowMs).toISOString();
    const outcome = await this.#deps.db.transaction().execute(async (trx) => {
      const done = await work(trx, now, nowMs);
      for (const event of done.audit) await this.#deps.audit.append(trx, ctx, event, now);
      return done;
    });
    if (outcome.changed !== undefined) this.#invalidate(outcome.changed);
    return outcome.result;
  }

  #moveStages(
    ctx: ActorContext,
    rawPath: string,
    cas: number | undefined,
    action: string,
    plan: (stages: ReadonlyMap<string, number>) => Record<string, number | null>,
  ): Promise<SecretMetadata> {
    const path = assertSecretPath(rawPath);
    return this.#transaction(async (trx, now) => {
      const row = await this.#mustLock(trx, path, now);
      const stages = await stagesOf(trx, row.id);
      const current = stages.get('current') ?? 0;
      if (cas !== undefined && cas !== current) throw casMismatch(path, cas, current);
      const moves = plan(stages);
      for (const version of Object.values(moves)) {
        if (version === null) continue;
        assertStorableVersion(path, version);
        const target = await trx.selectFrom('secret_versions').select('destroyed_at').where('secret_id', '=', row.id).where('version', '=', version).executeTakeFirst();
        if (target === undefined) throw versionNotFound(path, version);
        if (target.destroyed_at !== null) throw destroyedError(path, version);
      }
      const before = Object.fromEntries(stages);
      if (!(await applyStageMoves(trx, row.id, stages, moves))) return { result: toMetadata(row, stages), audit: [] };
      await trx.updateTable('secrets').set({ updated_at: now }).where('id', '=', row.id).execute();
      const audit = [{ action, target: row.id, data: { path, before, after: Object.fromEntries(stages) } }];
      return { result: toMetadata({ ...row, updated_at: now }, stages), audit, changed: row.id };
    }, ctx);
  }

  /**
   * Locks a secret's row by path. A secret past its recovery window is purged here and reads as absent.
   */
  async #lockByPath(trx: Transaction<Database>, path: string, now: string, options: { includeDeleted?: boolean } = {}): Promise<SecretsTable | undefined> {
    const row = await this.#deps.dialect.lockForUpdate(trx.selectFrom('secrets').selectAll().where('path', '=', path)).executeTakeFirst();
    if (row === undefined) return undefined;
    if (row.deletion_date !== null && row.deletion_date <= now) {
      await trx.deleteFrom('secret_reads').where('secret_id', '=', row.id).execute();
      await trx.deleteFrom('secrets').where('id', '=', row.id).execute();
      await this.#deps.audit.append(trx, { actor: 'system' }, { action: 'secret.purged', target: row.id, data: { path } }, now);
      this.#invalidate(row.id);
      return undefined;
    }
    if (row.deleted_at !== null && options.includeDeleted !== true) throw scheduledForDeletion(row);
    return row;
  }

  async #mustLock(trx: Transaction<Database>, path: string, now: string): Promise<SecretsTable> {
    const row = await this.#lockByPath(trx, path, now);
    if (row === undefined) throw notFound(path);
    return row;
  }

  async #create(trx: Transaction<Database>, ctx: ActorContext, path: string, input: PutSecretInput, now: string): Promise<SecretsTable> {
    const row: SecretsTable = {
      id: `sec_${newKeyIdBody(this.#deps.random)}`,
      path,
      owner: input.owner ?? ctx.actor,
      description: input.description ?? '',
      labels: JSON.stringify(input.labels ?? {}),
      expires_at: input.expiresAt ?? null,
      max_versions: input.maxVersions ?? this.#config.defaultMaxVersions,
      latest_version: 0,
      created_at: now,
      created_by: ctx.actor,
      updated_at: now,
      deleted_at: null,
      deletion_date: null,
    };
    await trx.insertInto('secrets').values(row).execute();
    return row;
  }

  async #updateMetadata(trx: Transaction<Database>, row: SecretsTable, input: PutSecretInput, now: string, audit: AuditEventInput[]): Promise<SecretsTable> {
    const changes: Partial<SecretsTable> = {};
    if (input.owner !== undefined && input.owner !== row.owner) changes.owner = input.owner;
    if (input.description !== undefined && input.description !== row.description) changes.description = input.description;
    if (input.labels !== undefined) changes.labels = JSON.stringify(input.labels);
    if (input.expiresAt !== undefined && input.expiresAt !== row.expires_at) changes.expires_at = input.expiresAt;
    if (input.maxVersions !== undefined && input.maxVersions !== row.max_versions) changes.max_versions = input.maxVersions;
    if (Object.keys(changes).length === 0) return row;
    await trx.updateTable('secrets').set({ ...changes, updated_at: now }).where('id', '=', row.id).execute();
    audit.push({ action: 'secret.updated', target: row.id, data: { path: row.path, fields: Object.keys(changes).map(camel) } });
    return { ...row, ...changes, updated_at: now };
  }

  /** Deletes the oldest versions past `maxVersions`, never one that carries a stage. */
  async #prune(trx: Transaction<Database>, secretId: string, maxVersions: number, stages: ReadonlyMap<string, number>): Promise<number[]> {
    const all = await trx.selectFrom('secret_versions').select('version').where('secret_id', '=', secretId).orderBy('version', 'asc').execute();
    let excess = all.length - maxVersions;
    if (excess <= 0) return [];
    const staged = new Set(stages.values());
    const doomed: number[] = [];
    for (const { version } of all) {
      if (excess === 0) break;
      if (staged.has(Number(version))) continue;
      doomed.push(Number(version));
      excess -= 1;
    }
    if (doomed.length > 0) await trx.deleteFrom('secret_versions').where('secret_id', '=', secretId).where('version', 'in', doomed).execute();
    return doomed;
  }

  #digest(type: ValueType, bytes: Buffer): string {
    return valueDigest(this.#deps.digestKey, type, bytes);
  }

  /** The secret with its stages, from the cache when fresh; absent and deleted ones throw. */
  async #cached(path: string, nowMs: number): Promise<CachedSecret> {
    const hit = this.#byPath.get(path);
    // Deleted secrets are never cached (#load throws for them).
    if (hit !== undefined && nowMs - hit.loadedAt < this.#config.cacheTtlMs) return hit;
    const generation = this.#generation;
    const loaded = await this.#load(path, nowMs);
    if (generation === this.#generation) {
      if (this.#byPath.size >= this.#config.cacheMaxEntries) this.#clearCache();
      this.#byPath.set(path, loaded);
      this.#pathById.set(loaded.row.id, path);
    }
    return loaded;
  }

  async #load(path: string, nowMs: number): Promise<CachedSecret> {
    const row = await this.#deps.db.selectFrom('secrets').selectAll().where('path', '=', path).executeTakeFirst();
    if (row === undefined) throw notFound(path);
    if (row.deleted_at !== null) {
      if (row.deletion_date !== null && row.deletion_date <= new Date(nowMs).toISOString()) throw notFound(path);
      throw scheduledForDeletion(row);
    }
    return { row, stages: await stagesOf(this.#deps.db, row.id), versions: new Map(), opened: new Map(), loadedAt: nowMs };
  }

  #invalidate(secretId: string): void {
    this.#generation += 1;
    const path = this.#pathById.get(secretId);
    if (path === undefined) return;
    this.#pathById.delete(secretId);
    this.#byPath.delete(path);
  }

  #clearCache(): void {
    this.#generation += 1;
    this.#byPath.clear();
    this.#pathById.clear();
  }

  /** Drops every cached sealed row (after a KEK version is retired, say). */
  clearCache(): void {
    this.#clearCache();
  }
}

type Executor = Kysely<Database> | Transaction<Database>;

/** The audit event of a put that named an earlier request token; never the value. */
function replayEvent(action: string, secretId: string, path: string, requestToken: string, extra: Record<string, unknown>): AuditEventInput {
  return { action, target: secretId, data: { path, requestToken, ...extra } };
}

/** The stored row of one sealed version. */
export function versionRow(
  secretId: string,
  version: number,
  type: ValueType,
  envelope: Envelope,
  made: { readonly requestToken: string | null; readonly digest: string | null; readonly at: string; readonly by: string; readonly vendorId?: string | null },
): SecretVersionsTable {
  return {
    secret_id: secretId,
    version,
    value_type: type,
    envelope_format: envelope.format,
    alg: envelope.alg,
    kek_id: envelope.kekId,
    kek_version: envelope.kekVersion,
    wrapped_key: envelope.wrappedKey.toString('base64'),
    sealed: envelope.sealed.toString('base64'),
    request_token: made.requestToken,
    value_digest: made.digest,
    created_at: made.at,
    created_by: made.by,
    destroyed_at: null,
    vendor_id: made.vendorId ?? null,
  };
}

async function stagesOf(executor: Executor, secretId: string): Promise<Map<string, number>> {
  const rows = await executor.selectFrom('secret_stages').select(['stage', 'version']).where('secret_id', '=', secretId).execute();
  return new Map(rows.map((row) => [row.stage, Number(row.version)]));
}

async function stagesOfMany(executor: Executor, ids: readonly string[]): Promise<Map<string, Map<string, number>>> {
  const out = new Map<string, Map<string, number>>();
  if (ids.length === 0) return out;
  const rows = await executor.selectFrom('secret_stages').selectAll().where('secret_id', 'in', ids).execute();
  for (const row of rows) {
    let stages = out.get(row.secret_id);
    if (stages === undefined) {
      stages = new Map();
      out.set(row.secret_id, stages);
    }
    stages.set(row.stage, Number(row.version));
  }
  return out;
}

async function versionsOf(executor: Executor, secretId: string, stages: ReadonlyMap<string, number>): Promise<SecretVersionInfo[]> {
  const rows = await executor
    .selectFrom('secret_versions')
    .select(['version', 'created_at', 'created_by', 'destroyed_at', 'kek_version', 'vendor_id'])
    .where('secret_id', '=', secretId)
    .orderBy('version', 'desc')
    .execute();
  return rows.map((row) => ({
    version: Number(row.version),
    stages: stageNames(stages, Number(row.version)),
    createdAt: row.created_at,
    createdBy: row.created_by,
    destroyedAt: row.destroyed_at,
    kekVersion: Number(row.kek_version),
    vendorId: row.vendor_id,
  }));
}

/**
 * Applies stage moves to the table and to `stages`, in place: a stage is on one version at most.
 * Says whether anything moved.
 */
async function applyStageMoves(trx: Transaction<Database>, secretId: string, stages: Map<string, number>, moves: Record<string, number | null>): Promise<boolean> {
  let moved = false;
  for (const [stage, version] of Object.entries(moves)) {
    if (stages.get(stage) === (version ?? undefined)) continue;
    moved = true;
    await trx.deleteFrom('secret_stages').where('secret_id', '=', secretId).where('stage', '=', stage).execute();
    if (version === null) stages.delete(stage);
    else {
      await trx.insertInto('secret_stages').values({ secret_id: secretId, stage, version }).execute();
      stages.set(stage, version);
    }
  }
  return moved;
}

function resolveVersion(secret: CachedSecret, path: string, selector: ReadSelector): number {
  if (selector.version !== undefined) {
    assertStorableVersion(path, selector.version);
    return selector.version;
  }
  const stage = selector.stage ?? 'current';
  const version = secret.stages.get(stage);
  if (version === undefined) throw new AppError('ERR_SECRET_VERSION_NOT_FOUND', `no version of ${path} carries the stage "${stage}"`);
  return version;
}

function stageNames(stages: ReadonlyMap<string, number>, version: number): string[] {
  const names: string[] = [];
  for (const [stage, v] of stages) if (v === version) names.push(stage);
  return names.sort();
}

function toMetadata(row: SecretsTable, stages: ReadonlyMap<string, number>): SecretMetadata {
  return {
    id: row.id,
    path: row.path,
    owner: row.owner,
    description: row.description,
    labels: JSON.parse(row.labels) as Record<string, string>,
    expiresAt: row.expires_at,
    maxVersions: Number(row.max_versions),
    currentVersion: stages.get('current') ?? null,
    stages: Object.fromEntries([...stages].sort(([a], [b]) => a.localeCompare(b))),
    createdAt: row.created_at,
    createdBy: row.created_by,
    updatedAt: row.updated_at,
    deletedAt: row.deleted_at,
    deletionDate: row.deletion_date,
  };
}

function notFound(path: string): AppError {
  return new AppError('ERR_SECRET_NOT_FOUND', `no secret at ${path}`);
}

function scheduledForDeletion(row: SecretsTable): AppError {
  return new AppError('ERR_SECRET_SCHEDULED_FOR_DELETION', `${row.path} is scheduled for deletion on ${row.deletion_date}; restore it to use it again`);
}

function versionNotFound(path: string, version: number): AppError {
  return new AppError('ERR_SECRET_VERSION_NOT_FOUND', `${path} has no version ${version}`);
}

/** Versions are 32-bit integers in the database: a larger number names no version, and must not reach a query. */
function assertStorableVersion(path: string, version: number): void {
  if (version > MAX_VERSION) throw versionNotFound(path, version);
}

function destroyedError(path: string, version: number): AppError {
  return new AppError('ERR_SECRET_VERSION_DESTROYED', `version ${version} of ${path} has been destroyed`);
}

function casMismatch(path: string, cas: number, current: number | null): AppError {
  const actual = current === null ? 'the secret does not exist' : current === 0 ? 'the secret exists with no current version' : `the current version is ${current}`;
  return new AppError('ERR_SECRET_CAS_MISMATCH', `cas ${cas} is stale for ${path}: ${cas === 0 && current !== null ? 'the secret already exists' : actual}`);
}

function sameDigest(stored: string, computed: string): boolean {
  const a = Buffer.from(stored, 'base64url');
  const b = Buffer.from(computed, 'base64url');
  return a.length === b.length && timingSafeEqual(a, b);
}


function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

function decodeCursor(cursor: string): string {
  const path = Buffer.from(cursor, 'base64url').toString('utf8');
  if (path.length === 0 || path.length > 256) throw new AppError('ERR_INVALID_REQUEST', 'the cursor is not valid', { details: [{ field: 'cursor', message: 'not valid' }] });
  return path;
}

function normaliseTime(text: string, field: string): string {
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) throw new AppError('ERR_INVALID_REQUEST', `${field} must be an RFC 3339 time`, { details: [{ field, message: 'not an RFC 3339 time' }] });
  return new Date(ms).toISOString();
}

function camel(column: string): string {
  return column.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}
