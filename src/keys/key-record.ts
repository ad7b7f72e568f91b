/** The public view of a key: never its secret, never its hash. */
import type { ApiKeysTable } from '../store/index.js';
import { formatDuration } from '../shared/duration.js';
import type { KeyEnv } from './key-format.js';

export type KeyKind = 'service' | 'management';
export type KeyStatus = 'active' | 'expired' | 'revoked' | 'disabled' | 'superseded';
export const KEY_STATUSES: readonly KeyStatus[] = ['active', 'expired', 'revoked', 'disabled', 'superseded'];

export interface RateLimit {
  readonly limit: number;
  readonly window: string;
}

export interface KeyRecord {
  readonly id: string;
  readonly kind: KeyKind;
  readonly prefix: string;
  readonly env: KeyEnv;
  readonly status: KeyStatus;
  readonly owner: string;
  readonly purpose: string;
  readonly scopes: string[];
  readonly labels: Record<string, string>;
  readonly ipAllowlist: string[] | null;
  readonly rateLimit: RateLimit | null;
  readonly expiresAt: string;
  readonly createdAt: string;
  readonly createdBy: string;
  readonly updatedAt: string;
  readonly disabledAt: string | null;
  readonly revokedAt: string | null;
  readonly revokeReason: string | null;
  readonly replaces: string | null;
  readonly replacedBy: string | null;
  readonly graceEndsAt: string | null;
  readonly retiredAt: string | null;
  readonly lastUsedAt: string | null;
}

/** Status precedence: revoked, then superseded, then expired, then disabled. */
export function keyStatus(row: Pick<ApiKeysTable, 'revoked_at' | 'replaced_by' | 'expires_at' | 'disabled_at'>, nowIso: string): KeyStatus {
  if (row.revoked_at !== null) return 'revoked';
  if (row.replaced_by !== null) return 'superseded';
  if (row.expires_at <= nowIso) return 'expired';
  if (row.disabled_at !== null) return 'disabled';
  return 'active';
}

export function toKeyRecord(row: ApiKeysTable, labels: Record<string, string>, nowIso: string, lastUsedAt: string | null): KeyRecord {
  return {
    id: row.id,
    kind: row.kind,
    prefix: row.prefix,
    env: row.env,
    status: keyStatus(row, nowIso),
    owner: row.owner,
    purpose: row.purpose,
    scopes: JSON.parse(row.scopes) as string[],
    labels,
    ipAllowlist: row.ip_allowlist === null ? null : (JSON.parse(row.ip_allowlist) as string[]),
    rateLimit:
      row.rate_limit_limit === null || row.rate_limit_window_ms === null
        ? null
        : { limit: row.rate_limit_limit, window: formatDuration(Number(row.rate_limit_window_ms)) },
    expiresAt: row.expires_at,
    createdAt: row.created_at,
    createdBy: row.created_by,
    updatedAt: row.updated_at,
    disabledAt: row.disabled_at,
    revokedAt: row.revoked_at,
    revokeReason: row.revoke_reason,
    replaces: row.replaces,
    replacedBy: row.replaced_by,
    graceEndsAt: row.grace_ends_at,
    retiredAt: row.retired_at,
    lastUsedAt,
  };
}
