import { describe, expect, it } from 'vitest';
import { hasScope, isManagementScope, missingScopes, pathGrant, pathQualifierProblem, scopeCovers, secretScope } from './scopes.js';

describe('scopes', () => {
  it('matches exactly, by family wildcard, and by the root wildcard', () => {
    expect(scopeCovers('keys:verify', 'keys:verify')).toBe(true);
    expect(scopeCovers('keys:*', 'keys:verify')).toBe(true);
    expect(scopeCovers('*', 'audit:read')).toBe(true);
    expect(scopeCovers('keys:read', 'keys:verify')).toBe(false);
    expect(scopeCovers('keys:*', 'keysx:verify')).toBe(false);
    expect(scopeCovers('orders:*', 'orders')).toBe(false);
  });

  it('lists the requested scopes a holder lacks', () => {
    expect(missingScopes(['keys:verify'], ['keys:verify', 'keys:create'])).toEqual(['keys:create']);
    expect(missingScopes(['*'], ['keys:create', 'audit:read'])).toEqual([]);
    expect(hasScope([], 'keys:read')).toBe(false);
  });

  it('knows the management scopes and their wildcards', () => {
    expect(isManagementScope('keys:verify')).toBe(true);
    expect(isManagementScope('keys:*')).toBe(true);
    expect(isManagementScope('rotation:read')).toBe(true);
    expect(isManagementScope('rotation:write')).toBe(true);
    expect(isManagementScope('rotation:*')).toBe(true);
    expect(isManagementScope('rotation:run')).toBe(true);
    expect(isManagementScope('rotation:go')).toBe(false);
    expect(isManagementScope('*')).toBe(true);
    expect(isManagementScope('orders:read')).toBe(false);
    expect(isManagementScope('nothing:*')).toBe(false);
  });
});

describe('secret scopes limited to a path', () => {
  it('covers a path under a prefix at any depth, and nothing beside it', () => {
    expect(hasScope(['secrets:read:payments/*'], secretScope('secrets:read', 'payments/stripe/api-key'))).toBe(true);
    expect(hasScope(['secrets:read:payments/*'], secretScope('secrets:read', 'payments'))).toBe(false);
    expect(hasScope(['secrets:read:payments/*'], secretScope('secrets:read', 'payments-eu/key'))).toBe(false);
    expect(hasScope(['secrets:read:payments/*'], secretScope('secrets:write', 'payments/key'))).toBe(false);
  });

  it('lets an unqualified scope cover every path, and an exact path only itself', () => {
    expect(hasScope(['secrets:read'], secretScope('secrets:read', 'a/b/c'))).toBe(true);
    expect(hasScope(['secrets:read:a/b'], secretScope('secrets:read', 'a/b'))).toBe(true);
    expect(hasScope(['secrets:read:a/b'], secretScope('secrets:read', 'a/b/c'))).toBe(false);
    expect(hasScope(['secrets:*'], secretScope('secrets:admin', 'x'))).toBe(true);
    expect(hasScope(['secrets:read:*'], secretScope('secrets:read', 'x/y'))).toBe(true);
  });

  it('treats a narrower prefix as covered by a wider one, never the other way round', () => {
    expect(missingScopes(['secrets:read:payments/*'], ['secrets:read:payments/stripe/*'])).toEqual([]);
    expect(missingScopes(['secrets:read:payments/stripe/*'], ['secrets:read:payments/*'])).toEqual(['secrets:read:payments/*']);
  });

  it('accepts well-formed path qualifiers as management scopes and refuses the rest', () => {
    for (const scope of ['secrets:read:payments/*', 'secrets:write:a/b', 'secrets:admin:*', 'secrets:read:*', 'kek:admin']) {
      expect(isManagementScope(scope), scope).toBe(true);
    }
    for (const scope of ['secrets:read:Payments/*', 'secrets:read:a//b', 'secrets:read:/a', 'secrets:destroy', 'secrets:read:a/*/b']) {
      expect(isManagementScope(scope), scope).toBe(false);
    }
  });
});

describe('pathGrant', () => {
  it('grants every path to an unqualified or wildcard scope', () => {
    for (const held of ['*', 'secrets:*', 'secrets:read', 'secrets:read:*']) {
      expect(pathGrant([held], 'secrets:read'), held).toEqual({ all: true, prefixes: [], exact: [] });
    }
  });

  it('collects prefixes and exact paths, and ignores other families', () => {
    expect(pathGrant(['secrets:read:payments/*', 'secrets:read:ops/db', 'secrets:write:x/*', 'keys:read'], 'secrets:read')).toEqual({
      all: false,
      prefixes: ['payments/'],
      exact: ['ops/db'],
    });
  });
});

describe('secret scope path qualifiers', () => {
  it('accepts qualifiers that name paths or prefixes', () => {
    for (const scope of ['secrets:read:payments/*', 'secrets:read:*', 'secrets:write:a/b.c/d_e-f', 'secrets:admin:x', 'secrets:read:v1.2/key']) {
      expect(isManagementScope(scope), scope).toBe(true);
    }
  });

  it('refuses dot segments, empty segments and characters a path cannot hold', () => {
    for (const scope of [
      'secrets:read:payments/../*',
      'secrets:read:../*',
      'secrets:read:payments/..',
      'secrets:read:./payments/*',
      'secrets:read:payments/./key',
      'secrets:read:a/.../b',
      'secrets:read:a//b',
      'secrets:read:/a',
      'secrets:read:a/',
      'secrets:read:a//*',
      'secrets:read:',
      'secrets:read:A/b',
      'secrets:read:a b',
      'secrets:read:a/*/b',
      'secrets:read:a*',
      'secrets:write:a\\b',
    ]) {
      expect(isManagementScope(scope), scope).toBe(false);
    }
  });

  it('says what is wrong with a qualifier', () => {
    expect(pathQualifierProblem('payments/../*')).toMatch(/"\." or "\.\." segment/);
    expect(pathQualifierProblem('a//b')).toMatch(/empty segment/);
    expect(pathQualifierProblem('a/')).toMatch(/empty segment/);
    expect(pathQualifierProblem('A')).toMatch(/characters/);
    expect(pathQualifierProblem('x'.repeat(300))).toMatch(/longer/);
    expect(pathQualifierProblem('payments/*')).toBeUndefined();
  });
});
