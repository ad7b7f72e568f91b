import { describe, expect, it } from 'vitest';
import type { KeyRecord } from '../../keys/index.js';
import { AppError } from '../../shared/errors.js';
import { normalisePolicy } from '../policy.js';
import { authorDenial } from './author-check.js';

const policy = normalisePolicy({
  name: 'acme',
  target: { secret: 'vendors/acme/api-key' },
  schedule: { every: '30d' },
  overlap: '1h',
  connector: { type: 'http', settings: { adminSecret: 'vendors/acme/admin' } },
});
const FULL = ['rotation:run', 'secrets:read:vendors/*', 'secrets:write:vendors/acme/api-key'];

function keys(records: Array<Partial<KeyRecord> & { id: string }>) {
  return {
    async get(id: string) {
      const found = records.find((record) => record.id === id);
      if (!found) throw new AppError('ERR_KEY_NOT_FOUND', `no key with id ${id}`);
      return { status: 'active', scopes: [], replacedBy: null, ...found } as KeyRecord;
    },
  };
}

describe('authorDenial', () => {
  it('lets an active author holding every need run the policy', async () => {
    expect(await authorDenial(keys([{ id: 'key_a', scopes: FULL }]), 'key_a', policy)).toBeUndefined();
  });

  it('names the scopes a narrowed author lost', async () => {
    expect(await authorDenial(keys([{ id: 'key_a', scopes: ['rotation:run', 'secrets:write:vendors/acme/api-key', 'secrets:read:vendors/acme/api-key'] }]), 'key_a', policy)).toBe(
      "the policy's author key_a no longer holds secrets:read:vendors/acme/admin",
    );
  });

  it('refuses a revoked, expired, disabled or unknown author', async () => {
    for (const status of ['revoked', 'expired', 'disabled'] as const) {
      expect(await authorDenial(keys([{ id: 'key_a', scopes: FULL, status }]), 'key_a', policy)).toBe(`the policy's author key_a no longer holds rotation:run: its token is ${status}`);
    }
    expect(await authorDenial(keys([]), 'prn_gone', policy)).toBe("the policy's author prn_gone no longer holds rotation:run: no such token");
  });

  it('follows a rotated author to its successor, and judges the successor', async () => {
    const chain = [
      { id: 'key_a', status: 'superseded' as const, replacedBy: 'key_b', scopes: FULL },
      { id: 'key_b', status: 'superseded' as const, replacedBy: 'key_c', scopes: FULL },
      { id: 'key_c', scopes: FULL },
    ];
    expect(await authorDenial(keys(chain), 'key_a', policy)).toBeUndefined();
    expect(await authorDenial(keys([...chain.slice(0, 2), { id: 'key_c', scopes: FULL, status: 'revoked' }]), 'key_a', policy)).toContain('its token is revoked');
  });
});
