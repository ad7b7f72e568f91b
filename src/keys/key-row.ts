/**
 * A fresh key row and its key string: the one place that mints a key and hashes its secret.
 * Used by issue, rotate (settings copied from the old row) and bulk seeding.
 */
import type { KeyHasher } from '../crypto/index.js';
import type { ApiKeysTable } from '../store/index.js';
import { newKeyIdBody, type RandomBytes } from '../shared/ids.js';
import { formatKey } from './key-format.js';

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

export function newKeyRow(
  settings: KeySettings,
  meta: NewKeyRowMeta,
  deps: { readonly hasher: KeyHasher; readonly random: RandomBytes },
): { key: string; row: ApiKeysTable } {
  const idBody = newKeyIdBody(deps.random);
  const id = `key_${idBody}`;
  const key = formatKey(settings.prefix, settings.env, idBody, deps.random);
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
