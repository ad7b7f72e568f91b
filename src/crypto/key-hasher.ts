/**
 * Hashes the secret part of an issued key with HMAC-SHA256 under a server secret derived from
 * the master key. The version is stored on each row so the algorithm can change later.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { deriveSecret } from './master-key.js';

export const CURRENT_HASH_VERSION = 1;

export interface KeyHasher {
  readonly currentVersion: number;
  /** The key id is bound into the MAC, so a hash copied onto another row never matches. */
  hash(keyId: string, secret: string): string;
  /** Constant-time comparison of a presented secret against a stored hash. */
  matches(keyId: string, secret: string, storedHash: string | Buffer, version: number): boolean;
}

export function createKeyHasher(masterKey: Uint8Array): KeyHasher {
  const v1Key = deriveSecret(masterKey, 'key-hash:v1');
  const hashV1 = (keyId: string, secret: string): Buffer =>
    createHmac('sha256', v1Key).update(`${keyId}.${secret}`).digest();
  return {
    currentVersion: CURRENT_HASH_VERSION,
    hash: (keyId, secret) => hashV1(keyId, secret).toString('base64url'),
    matches(keyId, secret, storedHash, version) {
      if (version !== 1) return false;
      const expected = typeof storedHash === 'string' ? Buffer.from(storedHash, 'base64url') : storedHash;
      const actual = hashV1(keyId, secret);
      return expected.length === actual.length && timingSafeEqual(expected, actual);
    },
  };
}
