import { describe, expect, it } from 'vitest';
import { hasScope, isManagementScope, missingScopes, scopeCovers } from './scopes.js';

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
    expect(isManagementScope('*')).toBe(true);
    expect(isManagementScope('orders:read')).toBe(false);
    expect(isManagementScope('nothing:*')).toBe(false);
  });
});
