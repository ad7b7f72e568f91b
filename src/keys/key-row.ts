/**
 * A fresh key row and its key string: the one place that mints a key and hashes its secret.
 * Used by issue, rotate (settings copied from the old row) and bulk seeding.
 */
import type { KeyHasher } from '../crypto/index.js';
import type { ApiKeysTable } from '../store/index.js';
import { newKeyIdBody, type RandomBytes } from '../shared/ids.js';
import { formatKey, type KeyEnv } from './key-format.js';

/** The settings a key carries over a rotation, in row form. */
export type KeySettings = Pick<
  ApiKeysTable,
  'kind' | 'prefix' | 'env' | 'owner' | 'purpose' | 'scopes' | 'ip_allowlist' | 'rate_limit_limit' | 'rate_limit_window_ms'
>;

export interface NewKeyRowMeta {
  readonly expiresAt: string;
  readonly createdAt: string;
  readonly createdBy: string;
  readonly replaces?: string | null;
}

/**
 * A new key's id and text, drawn from `random` in one fixed order (id, then secret): a seeded
 * source (a rotation run's) draws the same key again.
 */
export function drawKey(prefix: string, env: KeyEnv, random: RandomBytes): { readonly id: string; readonly key: string } {
  const idBody = newKeyIdBody(random);
  return { id: `key_${idBody}`, key: formatKey(prefix, env, idBody, random) };
}

export function newKeyRow(
  settings: KeySettings,
  meta: NewKeyRowMeta,
  deps: { readonly hasher: KeyHasher; readonly random: RandomBytes },
): { key: string; row: ApiKeysTable } {
  const { id, key } = drawKey(settings.prefix, settings.env, deps.random);
  const row: ApiKeysTable = {
    id,
    kind: settings.kind,
    prefix: settings.prefix,
    env: settings.env,
    hash_version: deps.hasher.currentVersion,
    key_hash: deps.hasher.hash(id, secretOf(key)),
    owner: settings.owner,
    purpose: settings.purpose,
    scopes: settings.scopes,
    ip_allowlist: settings.ip_allowlist,
    rate_limit_limit: settings.rate_limit_limit,
    rate_limit_window_ms: settings.rate_limit_window_ms,
    expires_at: meta.expiresAt,
    created_at: meta.createdAt,
    created_by: meta.createdBy,
    updated_at: meta.createdAt,
    disabled_at: null,
    revoked_at: null,
    revoke_reason: null,
    replaces: meta.replaces ?? null,
    replaced_by: null,
    grace_ends_at: null,
    retired_at: null,
  };
  return { key, row };
}

/** `<prefix>_<env>_<id>_<secret><checksum>`: the secret is the last segment minus 6 characters. */
function secretOf(key: string): string {
  const last = key.slice(key.lastIndexOf('_') + 1);
  return last.slice(0, last.length - 6);
}

/** What a rotation writes: the successor row (and its key, shown once) and the old row's overlap. */
export interface SuccessorRow {
  readonly key: string;
  readonly row: ApiKeysTable;
  /** When the old key stops verifying: the end of the overlap, or its own expiry if sooner. */
  readonly graceEndsAt: string;
}

export interface SuccessorOptions {
  readonly now: number;
  readonly overlapMs: number;
  readonly actor: string;
  /** The successor's expiry; by default it lives as long as the old key did (capped at maxTtlMs). */
  readonly expiresAt?: string;
  readonly maxTtlMs: number;
}

/**
 * The successor of `old` for a rotation: the same settings under a fresh id and secret. Shared
 * by `KeyService.rotate` and bulk rotation, so both mint exactly the same rows.
 */
export function successorRow(
  old: ApiKeysTable,
  options: SuccessorOptions,
  deps: { readonly hasher: KeyHasher; readonly random: RandomBytes },
): SuccessorRow {
  const { now } = options;
  const lifetime = Math.min(Date.parse(old.expires_at) - Date.parse(old.created_at), options.maxTtlMs);
  const expiresAt = options.expiresAt ?? new Date(now + lifetime).toISOString();
  const graceEndsAt = new Date(Math.min(Date.parse(old.expires_at), now + options.overlapMs)).toISOString();
  const { key, row } = newKeyRow(old, { expiresAt, createdAt: new Date(now).toISOString(), createdBy: options.actor, replaces: old.id }, deps);
  return { key, row, graceEndsAt };
}

/** Why a row cannot be rotated now, or null if it can. */
export function unrotatableReason(
  row: Pick<ApiKeysTable, 'retired_at' | 'revoked_at' | 'replaced_by' | 'expires_at' | 'disabled_at'>,
  nowIso: string,
): 'retired' | 'revoked' | 'superseded' | 'expired' | 'disabled' | null {
  if (row.retired_at !== null) return 'retired';
  if (row.revoked_at !== null) return 'revoked';
  if (row.replaced_by !== null) return 'superseded';
  if (row.expires_at <= nowIso) return 'expired';
  if (row.disabled_at !== null) return 'disabled';
  return null;
}
