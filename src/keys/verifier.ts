/**
 * The verify hot path. A key is parsed and its checksum checked without I/O; its row comes
 * from an in-process cache (loaded by primary key on a miss, concurrent misses share one
 * query), so a verification never writes and rarely reads the database, and a cache hit is
 * answered synchronously. A change made on this server drops the cached row at once; the
 * change feed drops rows changed on another server within a poll interval.
 *
 * Keys that have matched are also remembered by their full text (in memory only, never
 * written anywhere), so a key presented again costs one map lookup: no parse, no checksum, no
 * HMAC. Such an entry dies with its row: on any change to the key, on eviction, and after the
 * cache TTL. A key that does not match is never remembered.
 */
import type { Kysely } from 'kysely';
import type { KeyHasher } from '../crypto/index.js';
import type { ApiKeysTable, Database } from '../store/index.js';
import type { Clock } from '../shared/clock.js';
import { hasScope } from '../policy/index.js';
import { parseKey, type KeyEnv, type ParsedKey } from './key-format.js';
import { compileAllowlist, type CompiledAllowlist } from './ip-allowlist.js';
import { RateLimiter } from './rate-limiter.js';
import type { KeyKind } from './key-record.js';

export const VERIFY_CODES = [
  'VALID',
  'MALFORMED',
  'NOT_FOUND',
  'EXPIRED',
  'REVOKED',
  'DISABLED',
  'INSUFFICIENT_SCOPE',
  'IP_NOT_ALLOWED',
  'RATE_LIMITED',
] as const;
export type VerifyCode = (typeof VERIFY_CODES)[number];

export interface VerifyInput {
  readonly key: string;
  readonly scopes?: readonly string[] | undefined;
  readonly ip?: string | undefined;
  readonly userAgent?: string | undefined;
}

export interface VerifyOutcome {
  readonly valid: boolean;
  readonly code: VerifyCode;
  readonly keyId?: string;
  readonly owner?: string;
  readonly env?: KeyEnv;
  readonly scopes?: readonly string[];
  readonly expiresAt?: string;
  readonly rotation?: { readonly replacedBy: string; readonly graceEndsAt: string };
  readonly ratelimit?: { readonly limit: number; readonly remaining: number; readonly reset: string };
}

/** A row compiled for verification. */
export interface CachedKey {
  readonly id: string;
  readonly kind: KeyKind;
  readonly prefix: string;
  readonly env: KeyEnv;
  readonly hashVersion: number;
  readonly keyHash: Buffer | null;
  readonly owner: string;
  readonly scopes: readonly string[];
  readonly allowlist: CompiledAllowlist | null;
  readonly rateLimit: { readonly limit: number; readonly windowMs: number } | null;
  readonly disabled: boolean;
  readonly revoked: boolean;
  readonly replacedBy: string | null;
  readonly graceEndsAt: string | null;
  /** When the key stops verifying: its expiry, or the end of its rotation overlap if sooner. */
  readonly validUntil: string;
  readonly validUntilMs: number;
  readonly loadedAt: number;
  /** Set when the row is invalidated or evicted: entries found by key text must be dropped. */
  stale: boolean;
  /** Who this row is when it authenticates as a management token. */
  readonly principal: { readonly id: string; readonly owner: string; readonly scopes: readonly string[] };
  /** Outcomes built for this row, by code; see #fixed. */
  readonly outcomes: Map<VerifyCode, VerifyOutcome>;
  /** When a management token's use was last noted (token use is noted at most once a second). */
  lastNoted: number;
}

/** What verification needs from a key row. */
const VERIFY_COLUMNS = [
  'id',
  'kind',
  'prefix',
  'env',
  'hash_version',
  'key_hash',
  'owner',
  'scopes',
  'ip_allowlist',
  'rate_limit_limit',
  'rate_limit_window_ms',
  'expires_at',
  'disabled_at',
  'revoked_at',
  'replaced_by',
  'grace_ends_at',
] as const;
type VerifyRow = Pick<ApiKeysTable, (typeof VERIFY_COLUMNS)[number]>;

interface CacheSlot {
  readonly value: CachedKey | null;
  readonly loadedAt: number;
}

export interface UsageSink {
  record(keyId: string, outcome: VerifyCode, at: number, ip: string | undefined, userAgent: string | undefined): void;
}

export interface VerifierOptions {
  readonly cacheTtlMs: number;
  readonly cacheMaxEntries: number;
}

export interface VerifierDeps {
  readonly db: Kysely<Database>;
  readonly clock: Clock;
  readonly hasher: KeyHasher;
  readonly usage: UsageSink;
}

/**
 * The row a presented key belongs to (its secret checked), or why there is none. Kind is not
 * checked here: verify wants service keys, authentication management tokens.
 */
export type MatchResult = CachedKey | 'MALFORMED' | 'NOT_FOUND';
const MALFORMED: VerifyOutcome = Object.freeze({ valid: false, code: 'MALFORMED' });
const NOT_FOUND: VerifyOutcome = Object.freeze({ valid: false, code: 'NOT_FOUND' });

export class KeyVerifier {
  readonly #deps: VerifierDeps;
  readonly #options: VerifierOptions;
  readonly #cache = new Map<string, CacheSlot>();
  readonly #loading = new Map<string, Promise<CachedKey | null>>();
  readonly #limiter = new RateLimiter();
  /** Full key text → its row, for keys that matched; see the module note. */
  readonly #byText = new Map<string, CachedKey>();
  /** Bumped on every invalidation, so a load that raced a change never caches a stale row. */
  #generation = 0;

  constructor(deps: VerifierDeps, options: VerifierOptions) {
    this.#deps = deps;
    this.#options = options;
  }

  /** Drops a cached row; the next lookup reads the database. */
  invalidate(keyId: string): void {
    this.#generation += 1;
    const slot = this.#cache.get(keyId);
    if (slot?.value) slot.value.stale = true;
    this.#cache.delete(keyId);
    this.#loading.delete(keyId);
  }

  /**
   * Finds the row a presented key names and checks its secret, prefix and env. Synchronous on
   * a cache hit; a promise only when the row must be loaded.
   */
  match(presented: string): MatchResult | Promise<MatchResult> {
    const known = this.#byText.get(presented);
    if (known !== undefined) {
      if (!known.stale && this.#deps.clock.now() - known.loadedAt < this.#options.cacheTtlMs) return known;
      this.#byText.delete(presented);
    }
    const parsed = parseKey(presented);
    if (!parsed) return 'MALFORMED';
    const cached = this.#cached(parsed.keyId);
    if (cached !== undefined) return this.#check(cached, parsed, presented);
    return this.#load(parsed.keyId).then((entry) => this.#check(entry, parsed, presented));
  }

  /** Verifies a service key. Expected failures are values, never exceptions. */
  verify(input: VerifyInput): VerifyOutcome | Promise<VerifyOutcome> {
    const matched = this.match(input.key);
    return matched instanceof Promise ? matched.then((m) => this.#outcome(m, input)) : this.#outcome(matched, input);
  }

  #outcome(matched: MatchResult, input: VerifyInput): VerifyOutcome {
    if (matched === 'MALFORMED') return MALFORMED;
    if (matched === 'NOT_FOUND' || matched.kind !== 'service') return NOT_FOUND;
    const now = this.#deps.clock.now();
    const outcome = this.#decide(matched, input, now);
    this.#deps.usage.record(matched.id, outcome.code, now, input.ip, input.userAgent);
    return outcome;
  }

  #check(entry: CachedKey | null, parsed: ParsedKey, presented: string): MatchResult {
    if (entry === null || entry.keyHash === null || entry.prefix !== parsed.prefix || entry.env !== parsed.env) return 'NOT_FOUND';
    if (!this.#deps.hasher.matches(parsed.keyId, parsed.secret, entry.keyHash, entry.hashVersion)) return 'NOT_FOUND';
    if (!entry.stale) {
      if (this.#byText.size >= this.#options.cacheMaxEntries) this.#byText.clear();
      this.#byText.set(presented, entry);
    }
    return entry;
  }

  /** Whether an already-matched entry is usable right now (for management tokens). */
  usableCode(entry: CachedKey, now: number): VerifyCode {
    if (entry.revoked) return 'REVOKED';
    if (now >= entry.validUntilMs) return 'EXPIRED';
    if (entry.disabled) return 'DISABLED';
    return 'VALID';
  }

  #decide(entry: CachedKey, input: VerifyInput, now: number): VerifyOutcome {
    const state = this.usableCode(entry, now);
    if (state !== 'VALID') return this.#fixed(entry, state);
    if (entry.allowlist !== null && (input.ip === undefined || !entry.allowlist.allows(input.ip))) {
      return this.#fixed(entry, 'IP_NOT_ALLOWED');
    }
    if (input.scopes !== undefined) {
      for (const scope of input.scopes) {
        if (!hasScope(entry.scopes, scope)) return this.#fixed(entry, 'INSUFFICIENT_SCOPE');
      }
    }
    if (entry.rateLimit !== null) {
      const decision = this.#limiter.take(entry.id, entry.rateLimit.limit, entry.rateLimit.windowMs, now);
      const ratelimit = { limit: decision.limit, remaining: decision.remaining, reset: new Date(decision.resetAt).toISOString() };
      return { ...this.#fixed(entry, decision.allowed ? 'VALID' : 'RATE_LIMITED'), ratelimit };
    }
    return this.#fixed(entry, 'VALID');
  }

  /**
   * The outcome for a row and code depends on nothing else (rate-limit figures aside), so it
   * is built once per cached row and shared, frozen.
   */
  #fixed(entry: CachedKey, code: VerifyCode): VerifyOutcome {
    const known = entry.outcomes.get(code);
    if (known) return known;
    const outcome: VerifyOutcome = Object.freeze({
      valid: code === 'VALID',
      code,
      keyId: entry.id,
      owner: entry.owner,
      env: entry.env,
      scopes: entry.scopes,
      expiresAt: entry.validUntil,
      ...(code === 'VALID' && entry.replacedBy !== null ? { rotation: { replacedBy: entry.replacedBy, graceEndsAt: entry.graceEndsAt! } } : {}),
    });
    entry.outcomes.set(code, outcome);
    return outcome;
  }

  /** The cached row (null: known not to exist), or undefined on a miss. */
  #cached(keyId: string): CachedKey | null | undefined {
    const slot = this.#cache.get(keyId);
    if (slot !== undefined && this.#deps.clock.now() - slot.loadedAt < this.#options.cacheTtlMs) return slot.value;
    return undefined;
  }

  #load(keyId: string): Promise<CachedKey | null> {
    const pending = this.#loading.get(keyId);
    if (pending) return pending;
    const load = this.#read(keyId).finally(() => {
      if (this.#loading.get(keyId) === load) this.#loading.delete(keyId);
    });
    this.#loading.set(keyId, load);
    return load;
  }

  #compile(row: VerifyRow): CachedKey {
    const scopes = Object.freeze(JSON.parse(row.scopes) as string[]);
    // A rotated key stops at the end of its overlap, unless it expires before then.
    const graceFirst = row.grace_ends_at !== null && row.grace_ends_at < row.expires_at;
    const validUntil = graceFirst ? row.grace_ends_at! : row.expires_at;
    return {
      id: row.id,
      kind: row.kind,
      prefix: row.prefix,
      env: row.env,
      hashVersion: row.hash_version,
      keyHash: row.key_hash === null ? null : Buffer.from(row.key_hash, 'base64url'),
      owner: row.owner,
      scopes,
      allowlist: row.ip_allowlist === null ? null : compileAllowlist(JSON.parse(row.ip_allowlist) as string[]),
      rateLimit:
        row.rate_limit_limit === null || row.rate_limit_window_ms === null
          ? null
          : { limit: row.rate_limit_limit, windowMs: Number(row.rate_limit_window_ms) },
      disabled: row.disabled_at !== null,
      revoked: row.revoked_at !== null,
      replacedBy: row.replaced_by,
      graceEndsAt: row.grace_ends_at,
      validUntil,
      validUntilMs: Date.parse(validUntil),
      loadedAt: this.#deps.clock.now(),
      stale: false,
      principal: Object.freeze({ id: row.id, owner: row.owner, scopes }),
      outcomes: new Map(),
      lastNoted: 0,
    };
  }

  async #read(keyId: string): Promise<CachedKey | null> {
    const generation = this.#generation;
    const row = await this.#deps.db
      .selectFrom('api_keys')
      .select(VERIFY_COLUMNS)
      .where('id', '=', keyId)
      .executeTakeFirst();
    const value = row ? this.#compile(row) : null;
    if (generation !== this.#generation) {
      // A change landed while this row was read: answer with it once, but remember nothing.
      if (value !== null) value.stale = true;
      return value;
    }
    if (this.#cache.size >= this.#options.cacheMaxEntries) {
      const oldest = this.#cache.entries().next();
      if (!oldest.done) {
        if (oldest.value[1].value) oldest.value[1].value.stale = true;
        this.#cache.delete(oldest.value[0]);
      }
    }
    this.#cache.set(keyId, { value, loadedAt: this.#deps.clock.now() });
    return value;
  }
}

