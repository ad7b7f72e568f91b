import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { canonicalEvent, createChainHasher, legacyHash, SCHEME_KEYED, SCHEME_SHA256, type ChainRow } from './chain-hash.js';

const row = (data: string, seq = 1): ChainRow => ({ seq, time: '2026-11-01T00:00:00.000Z', actor: 'key_a', action: 'key.revoked', target: 'key_b', request_id: null, source_ip: '::1', data, prev_hash: '0'.repeat(64) });

describe('chain hashes', () => {
  it('are HMAC-SHA256 under the chain key, byte for byte, for short, non-ASCII and long events', () => {
    for (const size of [32, 48, 64]) {
      const key = randomBytes(size);
      const hasher = createChainHasher(key);
      for (const data of ['{}', JSON.stringify({ owner: 'ünïcødé ✓ 𝄞' }), JSON.stringify({ big: 'x'.repeat(10_000) }), '{}']) {
        const r = row(data);
        expect(hasher.keyed(r)).toBe(createHmac('sha256', key).update(canonicalEvent(r)).digest('hex'));
        expect(hasher.check(r, SCHEME_KEYED)).toBe(hasher.keyed(r));
      }
    }
  });

  it('check old events under plain SHA-256 and know no other scheme', () => {
    const hasher = createChainHasher(randomBytes(32));
    expect(hasher.check(row('{}'), SCHEME_SHA256)).toBe(legacyHash(row('{}')));
    expect(hasher.check(row('{}'), 'md5')).toBeUndefined();
    expect(() => createChainHasher(randomBytes(16))).toThrow(/32 to 64 bytes/);
  });
});
