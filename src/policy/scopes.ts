/**
 * Scope decisions, pure. A granted scope matches a required one exactly, or as a wildcard:
 * `*` matches everything, `keys:*` matches `keys:verify` and `keys:read:x`.
 */

export const MANAGEMENT_SCOPES = [
  'keys:create',
  'keys:read',
  'keys:verify',
  'keys:rotate',
  'keys:revoke',
  'keys:update',
  'tokens:create',
  'tokens:read',
  'tokens:rotate',
  'tokens:revoke',
  'audit:read',
] as const;

export type ManagementScope = (typeof MANAGEMENT_SCOPES)[number];

export function scopeCovers(granted: string, required: string): boolean {
  if (granted === required || granted === '*') return true;
  if (granted.endsWith(':*')) return required.startsWith(granted.slice(0, -1));
  return false;
}

export function hasScope(granted: readonly string[], required: string): boolean {
  for (const scope of granted) if (scopeCovers(scope, required)) return true;
  return false;
}

/** Scopes in `requested` that `granted` does not cover. */
export function missingScopes(granted: readonly string[], requested: readonly string[]): string[] {
  return requested.filter((scope) => !hasScope(granted, scope));
}

/** Whether a scope string names a management permission (or a wildcard over some). */
export function isManagementScope(scope: string): boolean {
  if (scope === '*') return true;
  if (scope.endsWith(':*')) {
    const family = scope.slice(0, -1);
    return MANAGEMENT_SCOPES.some((known) => known.startsWith(family));
  }
  return (MANAGEMENT_SCOPES as readonly string[]).includes(scope);
}
