/**
 * A management token never holds more than the token that made it: a token minted or rotated
 * by another ends no later than its parent (the expiry is clamped, as Vault clamps a child
 * token's TTL to its parent's) and may be used from no address its parent may not (the parent's
 * allowlist is an upper bound, inherited when the child names none).
 */
import type { ApiKeysTable } from '../store/index.js';
import { AppError } from '../shared/errors.js';
import { cidrWithin } from './ip-allowlist.js';

/** What a parent token lets a child have. */
export interface TokenBounds {
  readonly parentId: string;
  /** When the parent stops authenticating: its expiry, or the end of its rotation overlap. */
  readonly endsAt: string;
  /** Normalised CIDRs, or null for any address. */
  readonly allowlist: readonly string[] | null;
}

export function boundsOf(parent: Pick<ApiKeysTable, 'id' | 'expires_at' | 'grace_ends_at' | 'replaced_by' | 'ip_allowlist'>): TokenBounds {
  const graceEnd = parent.replaced_by !== null ? parent.grace_ends_at : null;
  return {
    parentId: parent.id,
    endsAt: graceEnd !== null && graceEnd < parent.expires_at ? graceEnd : parent.expires_at,
    allowlist: parent.ip_allowlist === null ? null : (JSON.parse(parent.ip_allowlist) as string[]),
  };
}

/** The child's expiry, no later than the parent's end; `clamped` says when it was cut. */
export function clampExpiry(requested: string, bounds: TokenBounds | undefined): { expiresAt: string; clamped: boolean } {
  if (bounds === undefined || Date.parse(requested) <= Date.parse(bounds.endsAt)) return { expiresAt: requested, clamped: false };
  return { expiresAt: new Date(Date.parse(bounds.endsAt)).toISOString(), clamped: true };
}

/**
 * The child's allowlist under the parent's: the parent's when the child names none, the child's
 * when each entry lies inside one of the parent's, else ERR_ALLOWLIST_ESCALATION naming the entry.
 */
export function boundAllowlist(requested: readonly string[] | null, bounds: TokenBounds | undefined, field = 'ipAllowlist'): readonly string[] | null {
  if (bounds === undefined || bounds.allowlist === null) return requested;
  if (requested === null) return bounds.allowlist;
  const parent = bounds.allowlist;
  const outside = requested.find((entry) => !parent.some((outer) => cidrWithin(entry, outer)));
  if (outside !== undefined) {
    throw new AppError('ERR_ALLOWLIST_ESCALATION', `${field} entry "${outside}" is outside the allowlist of token ${bounds.parentId} (${parent.join(', ')}); a token cannot allow addresses its own allowlist does not`, {
      details: [{ field, message: `"${outside}" is outside ${parent.join(', ')}` }],
    });
  }
  return requested;
}
