import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { checksum, crc32Ascii, formatKey, parseKey, MAX_KEY_LENGTH } from './key-format.js';

const random = (size: number) => randomBytes(size);
const ID = 'AbCdEfGhIjKlMnOpQrStUv';

describe('key format', () => {
  it('formats prefix, env, id, secret and checksum that parse back', () => {
    const key = formatKey('ks', 'live', ID, random);
    expect(key).toMatch(/^ks_live_AbCdEfGhIjKlMnOpQrStUv_[0-9A-Za-z]{49}$/);
    expect(key.length).toBeLessThanOrEqual(MAX_KEY_LENGTH);
    expect(parseKey(key)).toMatchObject({ prefix: 'ks', env: 'live', keyId: `key_${ID}` });
  });

  it('rejects a key whose checksum does not match, without any lookup', () => {
    const key = formatKey('ks', 'test', ID, random);
    const last = key.at(-1)!;
    const flipped = key.slice(0, -1) + (last === 'a' ? 'b' : 'a');
    expect(parseKey(flipped)).toBeUndefined();
  });

  it('rejects a key whose secret was altered even when the shape is right', () => {
    const key = formatKey('ks', 'live', ID, random);
    const at = key.length - 10;
    const altered = key.slice(0, at) + (key[at] === 'x' ? 'y' : 'x') + key.slice(at + 1);
    expect(parseKey(altered)).toBeUndefined();
  });

  it('rejects look-alike text, other envs, and over-long input', () => {
    expect(parseKey('')).toBeUndefined();
    expect(parseKey('ks_live_')).toBeUndefined();
    expect(parseKey(formatKey('ks', 'live', ID, random).replace('_live_', '_prod_'))).toBeUndefined();
    expect(parseKey('x'.repeat(5000))).toBeUndefined();
    expect(parseKey(`${formatKey('ks', 'live', ID, random)}\n`)).toBeUndefined();
  });

  it('computes the same CRC-32 as zlib', () => {
    for (const text of ['', 'hello', 'ks_live_AbCdEfGhIjKlMnOpQrStUv_' + 'x'.repeat(43)]) {
      expect(crc32Ascii(text)).toBe(crc32(text));
    }
  });

  it('computes a six-character base62 CRC32 checksum', () => {
    expect(checksum('hello')).toMatch(/^[0-9A-Za-z]{6}$/);
    expect(checksum('hello')).toBe(checksum('hello'));
    expect(checksum('hello')).not.toBe(checksum('hellp'));
  });

  it('uses 43 base62 characters for 32 random bytes, zero-padded', () => {
    const zero = formatKey('ks', 'live', ID, (n) => new Uint8Array(n));
    const secret = zero.split('_')[3]!.slice(0, 43);
    expect(secret).toBe('0'.repeat(43));
    expect(parseKey(zero)).toBeDefined();
  });
});
