import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { keyCheckFingerprint, masterKeyCheck } from './master-key.js';

describe('masterKeyCheck', () => {
  it('is the same for the same key and differs for another', () => {
    const key = randomBytes(32);
    expect(masterKeyCheck(key)).toMatch(/^[0-9a-f]{64}$/);
    expect(masterKeyCheck(Buffer.from(key))).toBe(masterKeyCheck(key));
    expect(masterKeyCheck(randomBytes(32))).not.toBe(masterKeyCheck(key));
  });

  it('is pinned for a known key, and does not hold the key', () => {
    const key = Buffer.alloc(32, 7);
    // Pinned: a change of scheme must come with a new KEY_CHECK_SCHEME, or every database is refused.
    expect(masterKeyCheck(key)).toBe('326c339480eb3a393480f92c21386a413c9806c4a6318fb015b1cfd0c9d5e813');
    expect(masterKeyCheck(key)).not.toContain(key.toString('hex'));
  });

  it('shortens to a fingerprint for messages', () => {
    expect(keyCheckFingerprint('0123456789abcdef'.repeat(4))).toBe('kcv:0123456789abcdef');
  });
});
