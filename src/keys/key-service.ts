/**
 * Issued keys: issue, read, list, rotate, revoke, disable, enable, update, retire.
 * Every change runs in one transaction with its audit event, then drops the key from the
 * verify cache. The key string is returned once, from issue and rotate, and never stored.
 */
import type { Kysely, Transaction } from 'kysely';
import { ChangeFeed, type ActorContext, type AuditEventInput } from '../audit/index.js';
import type { AuditLog } from '../audit/index.js';
import type { KeyHasher } from '../crypto/index.js';
import type { Database, ApiKeysTable, StoreDialect } from '../store/index.js';
import { AppError } from '../shared/errors.js';
import { decodeCursor, encodeCursor } from '../shared/cursor.js';
import { parseDuration, formatDuration } from '../shared/duration.js';
import type { RandomBytes } from '../shared/ids.js';
import type { Clock } from '../shared/clock.js';
import { boundAllowlist, boundsOf, clampExpiry, type TokenBounds } from './token-bounds.js';
import { hasScope, isManagementScope, missingScopes, MANAGEMENT_SCOPES, pathQualifierProblem, secretScopeFamily } from '../policy/index.js';
import { DEFAULT_PREFIX, MANAGEMENT_PREFIX, PREFIX_RE, type KeyEnv } from './key-format.js';
import { drawKey, newKeyRow, successorRow, type SuccessorRow } from './key-row.js';
import { labelIn, readLabels, writeLabels } from './key-labels.js';
import { normaliseCidr } from './ip-allowlist.js';
import { toKeyRecord, type KeyKind, type KeyRecord, type KeyStatus } from './key-record.js';
import { KeyVerifier, type VerifyInput, type VerifyOutcome, type CachedKey, type MatchResult } from './verifier.js';
import { UsageRecorder, type KeyUsage } from './usage.js';

export interface KeyPolicyConfig {
  readonly defaultTtlMs: number;
  readonly maxTtlMs: number;
  readonly defaultOverlapMs: number;
  /** Upper bound on how long a cached row is trusted; the change feed usually drops it sooner. */
  readonly cacheTtlMs: number;
  readonly cacheMaxEntries: number;
  /** How often each server reads the change feed: the delay before a change made elsewhere is seen. */
  readonly changePollMs: number;
  readonly usageFlushMs: number;
}

export const DEFAULT_KEY_POLICY: KeyPolicyConfig = {
  defaultTtlMs: 30 * 86_400_000,
  maxTtlMs: 90 * 86_400_000,
  defaultOverlapMs: 86_400_000,
  cacheTtlMs: 600_000,
  cacheMaxEntries: 200_000,
  changePollMs: 1_000,
  usageFlushMs: 5_000,
};

export interface KeyServiceDeps {
  readonly db: Kysely<Database>;
  /** The audit log every change is written to, in the change's transaction. */
  readonly audit: AuditLog;
  readonly dialect: StoreDialect;
  readonly clock: Clock;
  readonly random: RandomBytes;
  readonly hasher: KeyHasher;
  readonly config: KeyPolicyConfig;
}

export interface ExpiryInput {
  readonly ttl?: string | undefined;
  readonly expiresAt?: string | undefined;
}

export interface RateLimitInput {
  readonly limit: number;
  readonly window: string;
}

export interface IssueKeyInput extends ExpiryInput {
  readonly owner: string;
  readonly purpose?: string | undefined;
  readonly env?: KeyEnv | undefined;
  readonly prefix?: string | undefined;
  readonly scopes?: readonly string[] | undefined;
  readonly labels?: Readonly<Record<string, string>> | undefined;
  readonly ipAllowlist?: readonly string[] | null | undefined;
  readonly rateLimit?: RateLimitInput | null | undefined;
}

export interface IssueTokenInput extends ExpiryInput {
  readonly scopes: readonly string[];
  readonly owner?: string | undefined;
  readonly purpose?: string | undefined;
  readonly labels?: Readonly<Record<string, string>> | undefined;
  readonly ipAllowlist?: readonly string[] | null | undefined;
}

export interface UpdateKeyInput extends ExpiryInput {
  readonly purpose?: string | undefined;
  readonly labels?: Readonly<Record<string, string>> | undefined;
  readonly scopes?: readonly string[] | undefined;
  readonly ipAllowlist?: readonly string[] | null | undefined;
  readonly rateLimit?: RateLimitInput | null | undefined;
}

export interface RotateKeyInput extends ExpiryInput {
  readonly overlap?: string | undefined;
}

export interface IssuedKey {
  /** The key itself: shown once, never stored. */
  readonly key: string;
  readonly record: KeyRecord;
}

export interface RotatedKey extends IssuedKey {
  readonly previous: KeyRecord;
}

export interface ListKeysFilter {
  readonly owner?: string | undefined;
  readonly env?: KeyEnv | undefined;
  readonly kind?: KeyKind | undefined;
  readonly labels?: ReadonlyArray<readonly [string, string]> | undefined;
  readonly status?: KeyStatus | undefined;
  readonly expiringWithin?: string | undefined;
  readonly unusedFor?: string | undefined;
  readonly cursor?: string | undefined;
  readonly limit?: number | undefined;
}

export interface KeyPage {
  readonly data: KeyRecord[];
  readonly nextCursor: string | null;
}

/**
 * Which kind of key an operation may touch. Management tokens are only reachable through the
 * token routes, and then only by a caller whose scopes cover the token's own: otherwise a
 * narrow token could rotate the root token into a fresh `*` token.
 */
export type KeyTarget =
  | { readonly kind: 'service' }
  /** `callerId`: the token making the change; a token it rotates never outlives it nor leaves its allowlist. */
  | { readonly kind: 'management'; readonly callerScopes: readonly string[]; readonly callerId?: string | undefined };

export const SERVICE_TARGET: KeyTarget = Object.freeze({ kind: 'service' });

/** The authenticated caller of the management API. */
export interface Principal {
  readonly id: string;
  readonly owner: string;
  readonly scopes: readonly string[];
}

export type AuthFailure = 'MALFORMED' | 'NOT_FOUND' | 'REVOKED' | 'EXPIRED' | 'DISABLED' | 'SERVICE_KEY' | 'IP_NOT_ALLOWED';

export type AuthResult = { readonly ok: true; readonly principal: Principal } | { readonly ok: false; readonly reason: AuthFailure; readonly keyId?: string };

export class KeyService {
  readonly #deps: KeyServiceDeps;
  readonly verifier: KeyVerifier;
  readonly usage: UsageRecorder;
  readonly changes: ChangeFeed;

  constructor(deps: KeyServiceDeps) {
    this.#deps = deps;
    this.usage = new UsageRecorder(deps.db, deps.dialect);
    this.verifier = new KeyVerifier(
      { db: deps.db, clock: deps.clock, hasher: deps.hasher, usage: this.usage },
      { cacheTtlMs: deps.config.cacheTtlMs, cacheMaxEntries: deps.config.cacheMaxEntries },
    );
    this.changes = new ChangeFeed(deps.db, 'key_', (keyId) => this.verifier.invalidate(keyId));
  }

  /** Starts the background work of a serving process: the change feed and usage flushing. */
  async start(): Promise<void> {
    await this.changes.start(this.#deps.config.changePollMs);
    this.usage.start(this.#deps.config.usageFlushMs);
  }

  /** Stops background work and flushes pending usage. */
  async stop(): Promise<void> {
    this.changes.stop();
    await this.usage.stop();
  }

  get config(): KeyPolicyConfig {
    return this.#deps.config;
  }

  /** Synchronous when the key's row is cached, a promise otherwise. */
  verify(input: VerifyInput): VerifyOutcome | Promise<VerifyOutcome> {
    return this.verifier.verify(input);
  }

  /**
   * Authenticates a management token; service keys are refused. Synchronous when the token's
   * row is cached (the common case on every gateway call), a promise otherwise.
   */
  authenticate(token: string, ip?: string): AuthResult | Promise<AuthResult> {
    const matched = this.verifier.match(token);
    return matched instanceof Promise ? matched.then((m) => this.#authResult(m, ip)) : this.#authResult(matched, ip);
  }

  #authResult(matched: MatchResult, ip: string | undefined): AuthResult {
    if (matched === 'MALFORMED' || matched === 'NOT_FOUND') return { ok: false, reason: matched };
    // A service key is told apart from an unknown token, for a clearer refusal.
    if (matched.kind !== 'management') return { ok: false, reason: 'SERVICE_KEY', keyId: matched.id };
    const entry: CachedKey = matched;
    const now = this.#deps.clock.now();
    const code = this.verifier.usableCode(entry, now);
    if (code !== 'VALID') return { ok: false, reason: code as AuthFailure, keyId: entry.id };
    if (entry.allowlist !== null && (ip === undefined || !entry.allowlist.allows(ip))) {
      return { ok: false, reason: 'IP_NOT_ALLOWED', keyId: entry.id };
    }
    // A token's last use is noted at most once a second: it authenticates every gateway call.
    if (now - entry.lastNoted >= 1_000) {
      entry.lastNoted = now;
      this.usage.noteUse(entry.id, now, ip, undefined);
    }
    return { ok: true, principal: entry.principal };
  }

  async issue(ctx: ActorContext, input: IssueKeyInput): Promise<IssuedKey> {
    const scopes = input.scopes ?? [];
    return this.#insert(ctx, 'service', input.prefix ?? DEFAULT_PREFIX, input, scopes, 'key.issued');
  }

  /**
   * Issues a management token; a caller cannot grant scopes it does not hold. Given the calling
   * token's id (`parentId`), the new token ends no later than it and stays inside its allowlist
   * (see token-bounds.ts).
   */
  async issueToken(ctx: ActorContext, caller: readonly string[], input: IssueTokenInput, parentId?: string): Promise<IssuedKey> {
    for (const scope of input.scopes) {
      const family = secretScopeFamily(scope);
      const problem = family === undefined ? undefined : pathQualifierProblem(scope.slice(family.length + 1));
      if (problem !== undefined) {
        throw new AppError('ERR_INVALID_REQUEST', `scope "${scope.slice(0, 300)}" has a path that no secret can have: ${problem}`, {
          details: [{ field: 'scopes', message: `"${scope.slice(0, 300)}": ${problem}` }],
        });
      }
    }
    const unknown = input.scopes.filter((scope) => !isManagementScope(scope));
    if (unknown.length > 0) {
      throw new AppError('ERR_INVALID_REQUEST', `unknown management scope ${unknown.map((s) => `"${s}"`).join(', ')}; known: *, ${MANAGEMENT_SCOPES.join(', ')}`, {
        details: [{ field: 'scopes', message: 'unknown management scope' }],
      });
    }
    const beyond = missingScopes(caller, input.scopes);
    if (beyond.length > 0) {
      throw new AppError('ERR_SCOPE_ESCALATION', `this token cannot grant ${beyond.join(', ')}: it does not hold them`);
    }
    const bounds = parentId === undefined ? undefined : await this.#boundsOf(this.#deps.db, parentId);
    return this.#insert(
      ctx,
      'management',
      MANAGEMENT_PREFIX,
      { ...input, owner: input.owner ?? ctx.actor, env: 'live', rateLimit: null },
      input.scopes,
      'token.issued',
      bounds,
    );
  }

  async get(keyId: string, kind: KeyKind = 'service'): Promise<KeyRecord> {
    const row = await this.#deps.db.selectFrom('api_keys').selectAll().where('id', '=', keyId).executeTakeFirst();
    if (!row || row.kind !== kind) throw notFound(keyId);
    return this.#record(this.#deps.db, row);
  }

  async list(filter: ListKeysFilter): Promise<KeyPage> {
    const now = this.#deps.clock.now();
    const nowIso = iso(now);
    const limit = filter.limit ?? 50;
    let query = this.#deps.db.selectFrom('api_keys').selectAll();
    if (filter.owner !== undefined) query = query.where('owner', '=', filter.owner);
    if (filter.env !== undefined) query = query.where('env', '=', filter.env);
    query = query.where('kind', '=', filter.kind ?? 'service');
    for (const [name, value] of filter.labels ?? []) query = query.where(labelIn(name, [value]));
    switch (filter.status) {
      case 'revoked':
        query = query.where('revoked_at', 'is not', null);
        break;
      case 'superseded':
        query = query.where('revoked_at', 'is', null).where('replaced_by', 'is not', null);
        break;
      case 'expired':
        query = query.where('revoked_at', 'is', null).where('replaced_by', 'is', null).where('expires_at', '<=', nowIso);
        break;
      case 'disabled':
      case 'active':
        query = query
          .where('revoked_at', 'is', null)
          .where('replaced_by', 'is', null)
          .where('expires_at', '>', nowIso)
          .where('disabled_at', filter.status === 'disabled' ? 'is not' : 'is', null);
        break;
      default:
        break;
    }
    if (filter.expiringWithin !== undefined) {
      const horizon = iso(now + lookback(filter.expiringWithin, 'expiringWithin'));
      query = query.where('revoked_at', 'is', null).where('expires_at', '>', nowIso).where('expires_at', '<=', horizon);
    }
    if (filter.unusedFor !== undefined) {
      const cutoff = iso(now - lookback(filter.unusedFor, 'unusedFor'));
      await this.usage.flush({ force: true });
      query = query
        .where('created_at', '<=', cutoff)
        .where(({ not, exists, selectFrom }) =>
          not(
            exists(
              selectFrom('key_last_use')
                .select('key_last_use.key_id')
                .whereRef('key_last_use.key_id', '=', 'api_keys.id')
                .where('key_last_use.used_at', '>', cutoff),
            ),
          ),
        );
    }
    if (filter.cursor !== undefined) {
      const [createdAt, id] = decodeCursor(filter.cursor);
      query = query.where((eb) =>
        eb.or([eb('created_at', '<', createdAt), eb.and([eb('created_at', '=', createdAt), eb('id', '<', id)])]),
      );
    }
    const rows = await query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit + 1).execute();
    const page = rows.slice(0, limit);
    const ids = page.map((row) => row.id);
    const [labels, lastUse] = await Promise.all([this.#labelsFor(this.#deps.db, ids), this.#lastUseFor(this.#deps.db, ids)]);
    const last = page[page.length - 1];
    return {
      data: page.map((row) => toKeyRecord(row, labels.get(row.id) ?? {}, nowIso, lastUse.get(row.id) ?? null)),
      nextCursor: rows.length > limit && last ? encodeCursor(last.created_at, last.id) : null,
    };
  }

  /**
   * Rotates a key. `options.random` draws the successor's id and secret: a rotation run passes a
   * source derived from its run id, so a run resumed after a crash can re-derive the key it made
   * (see `replayRotation`) instead of losing a value that is shown only once.
   */
  async rotate(ctx: ActorContext, keyId: string, input: RotateKeyInput, target: KeyTarget = SERVICE_TARGET, options: { random?: RandomBytes } = {}): Promise<RotatedKey> {
    const overlapMs = this.overlapOf(input.overlap);
    const result = await this.#change(ctx, keyId, target, async (trx, old, now) => {
      assertRotatable(old, iso(now));
      const expiresAt = input.ttl !== undefined || input.expiresAt !== undefined ? this.#expiry(input, now) : undefined;
      const successor = this.successorOf(old, ctx, now, overlapMs, expiresAt, options.random);
      const { key, graceEndsAt } = successor;
      let row = successor.row;
      let clampedTo: string | undefined;
      if (target.kind === 'management' && target.callerId !== undefined) {
        const bounds = target.callerId === old.id ? boundsOf(old) : await this.#boundsOf(trx, target.callerId);
        const clamp = clampExpiry(row.expires_at, bounds);
        const allowlist = boundAllowlist(row.ip_allowlist === null ? null : (JSON.parse(row.ip_allowlist) as string[]), bounds);
        row = { ...row, expires_at: clamp.expiresAt, ip_allowlist: allowlist === null ? null : JSON.stringify(allowlist) };
        if (clamp.clamped) clampedTo = bounds.parentId;
      }
      const successorId = row.id;
      await trx.insertInto('api_keys').values(row).execute();
      const labels = await readLabels(trx, [old.id]);
      await writeLabels(trx, [[successorId, labels.get(old.id) ?? {}]]);
      // The guard makes two concurrent rotations give exactly one successor.
      const updated = await trx
        .updateTable('api_keys')
        .set({ replaced_by: successorId, grace_ends_at: graceEndsAt, updated_at: iso(now) })
        .where('id', '=', old.id)
        .where('replaced_by', 'is', null)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      if (Number(updated.numUpdatedRows) !== 1) throw new AppError('ERR_KEY_SUPERSEDED', `key ${old.id} has already been rotated`);
      const audit = rotationAudit(old, row, overlapMs, graceEndsAt, clampedTo === undefined ? {} : { expiryClampedTo: clampedTo });
      return { value: { key, successorId }, audit, alsoInvalidate: [successorId] };
    });
    const [record, previous] = await Promise.all([this.get(result.successorId, target.kind), this.get(keyId, target.kind)]);
    return { key: result.key, record, previous };
  }

  /** An overlap as given (`24h`), or the default, checked against the longest key lifetime. */
  overlapOf(text: string | undefined): number {
    const { config } = this.#deps;
    const overlapMs = text === undefined ? config.defaultOverlapMs : parseDuration(text, 'overlap');
    if (overlapMs > config.maxTtlMs) {
      throw new AppError('ERR_TTL_TOO_LONG', `overlap ${text} is longer than the maximum key lifetime ${formatDuration(config.maxTtlMs)}`, {
        details: [{ field: 'overlap', message: `at most ${formatDuration(config.maxTtlMs)}` }],
      });
    }
    return overlapMs;
  }

  /** The successor row a rotation of `old` writes, minted with this service's hasher and random source. */
  successorOf(old: ApiKeysTable, ctx: ActorContext, now: number, overlapMs: number, expiresAt?: string, random?: RandomBytes): SuccessorRow {
    return successorRow(
      old,
      { now, overlapMs, actor: ctx.actor, maxTtlMs: this.#deps.config.maxTtlMs, ...(expiresAt !== undefined ? { expiresAt } : {}) },
      { hasher: this.#deps.hasher, random: random ?? this.#deps.random },
    );
  }

  /**
   * Drops changed keys from this server's verify cache, after their change has committed. Other
   * servers learn of them through the audit change feed.
   */
  invalidate(keyIds: Iterable<string>): void {
    for (const id of keyIds) this.verifier.invalidate(id);
  }

  async revoke(ctx: ActorContext, keyId: string, reason: string | undefined, target: KeyTarget = SERVICE_TARGET): Promise<KeyRecord> {
    await this.#change(ctx, keyId, target, async (trx, old, now) => {
      if (old.revoked_at !== null) throw new AppError('ERR_KEY_REVOKED', `key ${old.id} is already revoked`);
      await trx
        .updateTable('api_keys')
        .set({ revoked_at: iso(now), revoke_reason: reason ?? null, updated_at: iso(now) })
        .where('id', '=', old.id)
        .execute();
      return { value: undefined, audit: [{ action: `${auditNoun(old.kind)}.revoked`, target: old.id, data: { reason: reason ?? null } }] };
    });
    return this.get(keyId, target.kind);
  }

  /**
   * The successor an earlier `rotate(…, { random })` made with the same random source, with its
   * key re-derived; undefined when the key was not rotated that way.
   */
  async replayRotation(keyId: string, random: RandomBytes): Promise<RotatedKey | undefined> {
    const old = await this.#deps.db.selectFrom('api_keys').selectAll().where('id', '=', keyId).executeTakeFirst();
    if (!old || old.kind !== 'service' || old.replaced_by === null) return undefined;
    const { id, key } = drawKey(old.prefix, old.env, random);
    if (old.replaced_by !== id) return undefined;
    const [record, previous] = await Promise.all([this.get(old.replaced_by), this.get(keyId)]);
    return { key, record, previous };
  }

  /**
   * Undoes a rotation: the successor is revoked and the old key is no longer superseded, so it
   * stays valid to its own expiry. Calling it again after it has happened changes nothing.
   */
  async undoRotation(ctx: ActorContext, keyId: string, successorId: string, reason: string): Promise<KeyRecord> {
    await this.#change(ctx, keyId, SERVICE_TARGET, async (trx, old, now) => {
      const audit: AuditEventInput[] = [];
      if (old.replaced_by === successorId) {
        await trx.updateTable('api_keys').set({ replaced_by: null, grace_ends_at: null, updated_at: iso(now) }).where('id', '=', old.id).execute();
        audit.push({ action: 'key.rotation.undone', target: old.id, data: { successor: successorId, reason } });
      } else if (old.replaced_by !== null) {
        throw new AppError('ERR_KEY_SUPERSEDED', `key ${old.id} was rotated to ${old.replaced_by}, not ${successorId}`);
      }
      const revoked = await trx
        .updateTable('api_keys')
        .set({ revoked_at: iso(now), revoke_reason: reason, updated_at: iso(now) })
        .where('id', '=', successorId)
        .where('replaces', '=', old.id)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      if (Number(revoked.numUpdatedRows) === 1) audit.push({ action: 'key.revoked', target: successorId, data: { reason } });
      return { value: undefined, audit, alsoInvalidate: [successorId] };
    });
    return this.get(keyId);
  }

  /** Moves the end of a superseded key's overlap to `until` (never past the key's own expiry). */
  async extendGrace(ctx: ActorContext, keyId: string, until: string, reason: string): Promise<KeyRecord> {
    await this.#change(ctx, keyId, SERVICE_TARGET, async (trx, old, now) => {
      assertNotRevoked(old);
      if (old.replaced_by === null || old.grace_ends_at === null) throw new AppError('ERR_KEY_NOT_SUPERSEDED', `key ${old.id} is not in a rotation overlap`);
      const graceEndsAt = until < old.expires_at ? until : old.expires_at;
      if (graceEndsAt <= old.grace_ends_at) return { value: undefined, audit: [] };
      await trx.updateTable('api_keys').set({ grace_ends_at: graceEndsAt, updated_at: iso(now) }).where('id', '=', old.id).execute();
      return { value: undefined, audit: [{ action: 'key.overlap.extended', target: old.id, data: { from: old.grace_ends_at, to: graceEndsAt, reason } }] };
    });
    return this.get(keyId);
  }

  /** When each key was last verified (any outcome), after flushing this server's pending use. */
  async lastUsed(ids: readonly string[]): Promise<Map<string, string>> {
    await this.usage.flush({ force: true });
    return this.#lastUseFor(this.#deps.db, [...ids]);
  }

  async disable(ctx: ActorContext, keyId: string): Promise<KeyRecord> {
    await this.#change(ctx, keyId, SERVICE_TARGET, async (trx, old, now) => {
      assertNotRevoked(old);
      if (old.disabled_at !== null) return { value: undefined, audit: [] };
      await trx.updateTable('api_keys').set({ disabled_at: iso(now), updated_at: iso(now) }).where('id', '=', old.id).execute();
      return { value: undefined, audit: [{ action: `${auditNoun(old.kind)}.disabled`, target: old.id }] };
    });
    return this.get(keyId);
  }

  async enable(ctx: ActorContext, keyId: string): Promise<KeyRecord> {
    await this.#change(ctx, keyId, SERVICE_TARGET, async (trx, old, now) => {
      assertNotRevoked(old);
      if (old.disabled_at === null) return { value: undefined, audit: [] };
      await trx.updateTable('api_keys').set({ disabled_at: null, updated_at: iso(now) }).where('id', '=', old.id).execute();
      return { value: undefined, audit: [{ action: `${auditNoun(old.kind)}.enabled`, target: old.id }] };
    });
    return this.get(keyId);
  }

  async update(ctx: ActorContext, keyId: string, input: UpdateKeyInput): Promise<KeyRecord> {
    await this.#change(ctx, keyId, SERVICE_TARGET, async (trx, old, now) => {
      assertNotRevoked(old);
      const set: Partial<ApiKeysTable> = {};
      const changed: Record<string, unknown> = {};
      if (input.purpose !== undefined) {
        set.purpose = input.purpose;
        changed.purpose = input.purpose;
      }
      if (input.scopes !== undefined) {
        const current = JSON.parse(old.scopes) as string[];
        const widened = input.scopes.filter((scope) => !hasScope(current, scope));
        if (widened.length > 0) {
          throw new AppError('ERR_SCOPE_WIDENING', `scopes can only be narrowed; ${widened.join(', ')} is not within the key's scopes ${current.join(', ') || '(none)'}. Issue a new key instead`, {
            details: [{ field: 'scopes', message: 'must be a subset of the current scopes' }],
          });
        }
        set.scopes = JSON.stringify(dedupe(input.scopes));
        changed.scopes = dedupe(input.scopes);
      }
      if (input.ipAllowlist !== undefined) {
        const list = normaliseAllowlist(input.ipAllowlist);
        set.ip_allowlist = list === null ? null : JSON.stringify(list);
        changed.ipAllowlist = list;
      }
      if (input.rateLimit !== undefined) {
        const limit = normaliseRateLimit(input.rateLimit);
        set.rate_limit_limit = limit?.limit ?? null;
        set.rate_limit_window_ms = limit?.windowMs ?? null;
        changed.rateLimit = input.rateLimit;
      }
      if (input.ttl !== undefined || input.expiresAt !== undefined) {
        if (old.expires_at <= iso(now)) {
          throw new AppError('ERR_KEY_EXPIRED', `key ${old.id} has expired and cannot be brought back; issue a new key instead`);
        }
        const expiresAt = this.#expiry(input, now);
        const ceiling = Date.parse(old.created_at) + this.#deps.config.maxTtlMs;
        if (Date.parse(expiresAt) > ceiling) {
          throw new AppError('ERR_TTL_TOO_LONG', `expiry ${expiresAt} is past this key's maximum ${iso(ceiling)} (${formatDuration(this.#deps.config.maxTtlMs)} after it was created); rotate it instead`, {
            details: [{ field: input.ttl !== undefined ? 'ttl' : 'expiresAt', message: 'past the maximum lifetime' }],
          });
        }
        set.expires_at = expiresAt;
        changed.expiresAt = expiresAt;
      }
      if (input.labels !== undefined) {
        await trx.deleteFrom('key_labels').where('key_id', '=', old.id).execute();
        await this.#writeLabels(trx, old.id, input.labels);
        changed.labels = input.labels;
      }
      if (Object.keys(changed).length === 0) return { value: undefined, audit: [] };
      set.updated_at = iso(now);
      await trx.updateTable('api_keys').set(set).where('id', '=', old.id).execute();
      return { value: undefined, audit: [{ action: `${auditNoun(old.kind)}.updated`, target: old.id, data: { changed } }] };
    });
    return this.get(keyId);
  }

  async retire(ctx: ActorContext, keyId: string): Promise<KeyRecord> {
    await this.#change(ctx, keyId, SERVICE_TARGET, async (trx, old, now) => {
      if (old.retired_at !== null) throw new AppError('ERR_KEY_RETIRED', `key ${old.id} is already retired`);
      const nowIso = iso(now);
      const graceOver = old.replaced_by !== null && old.grace_ends_at !== null && old.grace_ends_at <= nowIso;
      if (old.revoked_at === null && old.expires_at > nowIso && !graceOver) {
        throw new AppError('ERR_KEY_NOT_RETIRABLE', `key ${old.id} is still usable; revoke it first, or wait until it expires`);
      }
      await trx.updateTable('api_keys').set({ key_hash: null, retired_at: nowIso, updated_at: nowIso }).where('id', '=', old.id).execute();
      return { value: undefined, audit: [{ action: `${auditNoun(old.kind)}.retired`, target: old.id }] };
    });
    return this.get(keyId);
  }

  async usageOf(keyId: string, since: string): Promise<KeyUsage> {
    const sinceMs = this.#deps.clock.now() - lookback(since, 'since');
    const key = await this.#deps.db.selectFrom('api_keys').select('kind').where('id', '=', keyId).executeTakeFirst();
    if (key?.kind !== 'service') throw notFound(keyId);
    // Read the last use after the flush inside usage.read, so this server's pending use is in it.
    const usage = await this.usage.read(keyId, sinceMs);
    const row = await this.#deps.db.selectFrom('key_last_use').selectAll().where('key_id', '=', keyId).executeTakeFirst();
    return { ...usage, lastUsedAt: row?.used_at ?? null, lastUsedIp: row?.ip ?? null, lastUsedUserAgent: row?.user_agent ?? null };
  }

  async #insert(
    ctx: ActorContext,
    kind: KeyKind,
    prefix: string,
    input: IssueKeyInput,
    scopes: readonly string[],
    action: string,
    bounds?: TokenBounds,
  ): Promise<IssuedKey> {
    if (!PREFIX_RE.test(prefix)) {
      throw new AppError('ERR_INVALID_REQUEST', 'prefix must be 2–16 lowercase letters or digits, starting with a letter', {
        details: [{ field: 'prefix', message: 'expected [a-z][a-z0-9]{1,15}' }],
      });
    }
    const now = this.#deps.clock.now();
    const { expiresAt, clamped } = clampExpiry(this.#expiry(input, now), bounds);
    const allowlist = boundAllowlist(normaliseAllowlist(input.ipAllowlist ?? null), bounds);
    const rateLimit = normaliseRateLimit(input.rateLimit ?? null);
    const env = input.env ?? 'live';
    const { key, row } = newKeyRow(
      {
        kind,
        prefix,
        env,
        owner: input.owner,
        purpose: input.purpose ?? '',
        scopes: JSON.stringify(dedupe(scopes)),
        ip_allowlist: allowlist === null ? null : JSON.stringify(allowlist),
        rate_limit_limit: rateLimit?.limit ?? null,
        rate_limit_window_ms: rateLimit?.windowMs ?? null,
      },
      { expiresAt, createdAt: iso(now), createdBy: ctx.actor },
      this.#deps,
    );
    const id = row.id;
    await this.#deps.db.transaction().execute(async (trx) => {
      await trx.insertInto('api_keys').values(row).execute();
      await this.#writeLabels(trx, id, input.labels ?? {});
      await this.#deps.audit.append(trx, ctx, {
        action,
        target: id,
        data: { owner: row.owner, env, scopes: dedupe(scopes), expiresAt, labels: input.labels ?? {}, ...(clamped ? { expiryClampedTo: bounds?.parentId } : {}) },
      }, iso(now));
    });
    this.verifier.invalidate(id);
    return { key, record: await this.get(id, kind) };
  }

  /**
   * Runs one change to a key in a transaction: loads the row, applies `apply`, appends the
   * audit events it returns, and after commit drops the key (and any other named) from the cache.
   */
  /** What the calling token `parentId` lets a token it makes have; it must be a management token. */
  async #boundsOf(db: Kysely<Database> | Transaction<Database>, parentId: string): Promise<TokenBounds> {
    const parent = await db.selectFrom('api_keys').select(['id', 'kind', 'expires_at', 'grace_ends_at', 'replaced_by', 'ip_allowlist']).where('id', '=', parentId).executeTakeFirst();
    if (!parent || parent.kind !== 'management') throw new AppError('ERR_FORBIDDEN', 'only a management token can make or rotate management tokens');
    return boundsOf(parent);
  }

  async #change<T>(
    ctx: ActorContext,
    keyId: string,
    target: KeyTarget,
    apply: (
      trx: Transaction<Database>,
      old: ApiKeysTable,
      now: number,
    ) => Promise<{ value: T; audit: AuditEventInput[]; alsoInvalidate?: string[] }>,
  ): Promise<T> {
    const now = this.#deps.clock.now();
    const result = await this.#deps.db.transaction().execute(async (trx) => {
      const old = await lockRow(trx, keyId, this.#deps.dialect);
      if (!old || old.kind !== target.kind) throw notFound(keyId);
      if (target.kind === 'management') {
        const beyond = missingScopes(target.callerScopes, JSON.parse(old.scopes) as string[]);
        if (beyond.length > 0) {
          throw new AppError('ERR_SCOPE_ESCALATION', `this token cannot change token ${old.id}: that token holds scopes this one does not`);
        }
      }
      const outcome = await apply(trx, old, now);
      for (const event of outcome.audit) await this.#deps.audit.append(trx, ctx, event, iso(now));
      return outcome;
    });
    this.verifier.invalidate(keyId);
    for (const id of result.alsoInvalidate ?? []) this.verifier.invalidate(id);
    return result.value;
  }

  #expiry(input: ExpiryInput, now: number): string {
    const { defaultTtlMs, maxTtlMs } = this.#deps.config;
    if (input.ttl !== undefined && input.expiresAt !== undefined) {
      throw new AppError('ERR_INVALID_REQUEST', 'give either ttl or expiresAt, not both', {
        details: [{ field: 'ttl', message: 'conflicts with expiresAt' }],
      });
    }
    let at: number;
    if (input.expiresAt !== undefined) {
      at = Date.parse(input.expiresAt);
      if (!Number.isFinite(at)) {
        throw new AppError('ERR_INVALID_REQUEST', 'expiresAt must be an RFC 3339 time such as 2026-12-31T00:00:00Z', {
          details: [{ field: 'expiresAt', message: 'not a time' }],
        });
      }
      if (at <= now) {
        throw new AppError('ERR_INVALID_REQUEST', 'expiresAt must be in the future', { details: [{ field: 'expiresAt', message: 'in the past' }] });
      }
    } else {
      at = now + (input.ttl === undefined ? defaultTtlMs : parseDuration(input.ttl, 'ttl'));
    }
    if (at - now > maxTtlMs) {
      throw new AppError('ERR_TTL_TOO_LONG', `keys may live at most ${formatDuration(maxTtlMs)} on this server; choose a shorter ttl or an earlier expiresAt`, {
        details: [{ field: input.expiresAt !== undefined ? 'expiresAt' : 'ttl', message: `at most ${formatDuration(maxTtlMs)}` }],
      });
    }
    return iso(at);
  }

  async #record(db: Kysely<Database> | Transaction<Database>, row: ApiKeysTable): Promise<KeyRecord> {
    const [labels, lastUse] = await Promise.all([this.#labelsFor(db, [row.id]), this.#lastUseFor(db, [row.id])]);
    return toKeyRecord(row, labels.get(row.id) ?? {}, iso(this.#deps.clock.now()), lastUse.get(row.id) ?? null);
  }

  async #lastUseFor(db: Kysely<Database> | Transaction<Database>, ids: string[]): Promise<Map<string, string>> {
    if (ids.length === 0) return new Map();
    const rows = await db.selectFrom('key_last_use').select(['key_id', 'used_at']).where('key_id', 'in', ids).execute();
    return new Map(rows.map((row) => [row.key_id, row.used_at]));
  }

  #labelsFor(db: Kysely<Database> | Transaction<Database>, ids: string[]): Promise<Map<string, Record<string, string>>> {
    return readLabels(db, ids);
  }

  #writeLabels(trx: Transaction<Database>, keyId: string, labels: Readonly<Record<string, string>>): Promise<void> {
    return writeLabels(trx, [[keyId, labels]]);
  }
}

async function lockRow(trx: Transaction<Database>, keyId: string, dialect: StoreDialect): Promise<ApiKeysTable | undefined> {
  return dialect.lockForUpdate(trx.selectFrom('api_keys').selectAll().where('id', '=', keyId)).executeTakeFirst();
}

function assertNotRevoked(row: ApiKeysTable): void {
  if (row.retired_at !== null) throw new AppError('ERR_KEY_RETIRED', `key ${row.id} is retired`);
  if (row.revoked_at !== null) throw new AppError('ERR_KEY_REVOKED', `key ${row.id} is revoked`);
}

/** The two events of one rotation: the old key's and its successor's. Never the key itself. */
export function rotationAudit(old: ApiKeysTable, successor: ApiKeysTable, overlapMs: number, graceEndsAt: string, extra: Record<string, unknown> = {}): AuditEventInput[] {
  const noun = auditNoun(old.kind);
  return [
    { action: `${noun}.rotated`, target: old.id, data: { successor: successor.id, overlap: formatDuration(overlapMs), graceEndsAt, ...extra } },
    { action: `${noun}.issued`, target: successor.id, data: { rotatedFrom: old.id, expiresAt: successor.expires_at, scopes: JSON.parse(old.scopes), ...extra } },
  ];
}

function assertRotatable(row: ApiKeysTable, nowIso: string): void {
  assertNotRevoked(row);
  if (row.replaced_by !== null) {
    throw new AppError('ERR_KEY_SUPERSEDED', `key ${row.id} has already been rotated; rotate its successor ${row.replaced_by} instead`);
  }
  if (row.expires_at <= nowIso) throw new AppError('ERR_KEY_EXPIRED', `key ${row.id} has expired; issue a new key instead`);
  if (row.disabled_at !== null) throw new AppError('ERR_KEY_DISABLED', `key ${row.id} is disabled; enable it before rotating, or revoke it`);
}

function normaliseAllowlist(list: readonly string[] | null): string[] | null {
  if (list === null) return null;
  return dedupe(list.map((entry) => normaliseCidr(entry, 'ipAllowlist')));
}

function normaliseRateLimit(input: RateLimitInput | null): { limit: number; windowMs: number } | null {
  if (input === null) return null;
  const windowMs = parseDuration(input.window, 'rateLimit.window');
  if (windowMs > 86_400_000) {
    throw new AppError('ERR_INVALID_REQUEST', 'rateLimit.window must be at most 24h', { details: [{ field: 'rateLimit.window', message: 'at most 24h' }] });
  }
  return { limit: input.limit, windowMs };
}

function auditNoun(kind: KeyKind): string {
  return kind === 'management' ? 'token' : 'key';
}

function dedupe(values: readonly string[]): string[] {
  return [...new Set(values)];
}

function notFound(keyId: string): AppError {
  return new AppError('ERR_KEY_NOT_FOUND', `no key with id ${keyId}`);
}

/** A query window, capped at ten years so no filter can step outside the calendar. */
function lookback(text: string, field: string): number {
  return Math.min(parseDuration(text, field), 3650 * 86_400_000);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

