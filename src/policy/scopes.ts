/**
 * Scope decisions, pure. A granted scope matches a required one exactly, or as a wildcard:
 * `*` matches everything, `keys:*` matches `keys:verify` and `keys:read:x`. Secret scopes may
 * be limited to a path: `secrets:read` covers every path, `secrets:read:payments/*` covers
 * `payments/…` at any depth, `secrets:read:payments/stripe/api-key` that one secret.
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
  'events:read',
  'secrets:read',
  'secrets:write',
  'secrets:admin',
  'kek:read',
  'kek:admin',
  'rotation:read',
  'rotation:write',
  'rotation:run',
  'incidents:read',
  'incidents:write',
] as const;

/** The secret scopes that may carry a path qualifier. */
export const SECRET_SCOPES = ['secrets:read', 'secrets:write', 'secrets:admin'] as const;
export type SecretScope = (typeof SECRET_SCOPES)[number];

const PATH_QUALIFIER = /^(\*|[a-z0-9_.-]+(\/[a-z0-9_.-]+)*(\/\*)?)$/;
/** A secret path is at most this long (src/contract SECRET_PATH_MAX); a qualifier adds `/*`. */
const QUALIFIER_MAX = 256 + 2;

/**
 * Why a secret scope's path qualifier can never name a secret path, or undefined when it can.
 * `..` and `.` segments are refused although no path could match them: a scope is read by
 * people too, and `payments/../*` reads as "everything".
 */
export function pathQualifierProblem(qualifier: string): string | undefined {
  if (qualifier.length > QUALIFIER_MAX) return `longer than ${QUALIFIER_MAX} characters`;
  if (qualifier === '*') return undefined;
  const body = qualifier.endsWith('/*') ? qualifier.slice(0, -2) : qualifier;
  const segments = body.split('/');
  if (segments.some((segment) => segment === '')) return 'an empty segment (a leading, trailing or doubled "/")';
  if (segments.some((segment) => /^\.+$/.test(segment))) return 'a "." or ".." segment';
  if (!PATH_QUALIFIER.test(qualifier)) return 'characters a secret path cannot hold (a-z, 0-9, "-", "_", "." and "/" only; "*" only as a last "/*")';
  return undefined;
}

/** The secret scope family (`secrets:read`, …) a qualified scope belongs to, if any. */
export function secretScopeFamily(scope: string): SecretScope | undefined {
  return SECRET_SCOPES.find((known) => scope.startsWith(`${known}:`));
}

/** The scope a principal needs to do `scope` on the secret at `path`. */
export function secretScope(scope: SecretScope, path: string): string {
  return `${scope}:${path}`;
}

export type ManagementScope = (typeof MANAGEMENT_SCOPES)[number];

export function scopeCovers(granted: string, required: string): boolean {
  if (granted === required || granted === '*') return true;
  if (granted.endsWith(':*') || granted.endsWith('/*')) return required.startsWith(granted.slice(0, -1));
  // An unqualified scope covers each qualified form of it: `secrets:read` covers `secrets:read:a/b`.
  return required.startsWith(`${granted}:`);
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
    if (MANAGEMENT_SCOPES.some((known) => known.startsWith(family))) return true;
  }
  if ((MANAGEMENT_SCOPES as readonly string[]).includes(scope)) return true;
  const family = secretScopeFamily(scope);
  return family !== undefined && pathQualifierProblem(scope.slice(family.length + 1)) === undefined;
}

/** The paths a set of scopes may do `scope` on: every path (`all`), or prefixes and exact paths. */
export interface PathGrant {
  readonly all: boolean;
  /** Each ends in `/`: `payments/` from `secrets:read:payments/*`. */
  readonly prefixes: string[];
  readonly exact: string[];
}

export function pathGrant(granted: readonly string[], scope: SecretScope): PathGrant {
  const prefixes: string[] = [];
  const exact: string[] = [];
  for (const held of granted) {
    if (held === '*' || held === 'secrets:*' || held === scope || held === `${scope}:*`) return { all: true, prefixes: [], exact: [] };
    if (!held.startsWith(`${scope}:`)) continue;
    const qualifier = held.slice(scope.length + 1);
    if (qualifier.endsWith('/*')) prefixes.push(qualifier.slice(0, -1));
    else exact.push(qualifier);
  }
  return { all: false, prefixes, exact };
}
