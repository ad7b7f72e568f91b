import { describe, expect, it } from 'vitest';
import { AppError } from '../shared/errors.js';
import { AEAD_KEY_BYTES, aeadOpen, aeadSeal, decryptionFailed } from './aead.js';

/** A deterministic random source: bytes count up from a seed, so outputs are repeatable. */
function countingRandom(seed = 0): (size: number) => Buffer {
  let next = seed;
  return (size) => Buffer.from(Array.from({ length: size }, () => next++ & 0xff));
}

const key = Buffer.alloc(AEAD_KEY_BYTES, 0x11);
const aad = Buffer.from('sec_1/v1');
const plaintext = Buffer.from('sk_live_vendor_secret');

function expectDecryptionFailed(open: () => unknown): void {
  let error: unknown;
  try {
    open();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(AppError);
  expect((error as AppError).code).toBe('ERR_DECRYPTION_FAILED');
  expect((error as AppError).message).toBe('decryption failed');
}

describe('AES-256-GCM AEAD', () => {
  it('opens what it sealed, laid out as nonce ‖ ciphertext ‖ tag', () => {
    const sealed = aeadSeal(key, plaintext, aad, countingRandom(1));
    expect(sealed.length).toBe(12 + plaintext.length + 16);
    expect(sealed.subarray(0, 12)).toEqual(countingRandom(1)(12));
    expect(sealed.includes(plaintext)).toBe(false);
    expect(aeadOpen(key, sealed, aad)).toEqual(plaintext);
  });

  it('draws a fresh nonce each time, so the same value seals differently', () => {
    const random = countingRandom();
    const a = aeadSeal(key, plaintext, aad, random);
    const b = aeadSeal(key, plaintext, aad, random);
    expect(a.equals(b)).toBe(false);
    expect(aeadOpen(key, b, aad)).toEqual(plaintext);
  });

  it('seals an empty value', () => {
    const sealed = aeadSeal(key, Buffer.alloc(0), aad, countingRandom());
    expect(aeadOpen(key, sealed, aad)).toEqual(Buffer.alloc(0));
  });

  it('fails with only "decryption failed" under another AAD (another secret or version)', () => {
    const sealed = aeadSeal(key, plaintext, aad, countingRandom());
    expectDecryptionFailed(() => aeadOpen(key, sealed, Buffer.from('sec_2/v1')));
    expectDecryptionFailed(() => aeadOpen(key, sealed, Buffer.from('sec_1/v2')));
    expectDecryptionFailed(() => aeadOpen(key, sealed, Buffer.alloc(0)));
  });

  it('fails when any byte of nonce, ciphertext or tag is changed', () => {
    const sealed = aeadSeal(key, plaintext, aad, countingRandom());
    for (const at of [0, 11, 12, 12 + plaintext.length - 1, sealed.length - 16, sealed.length - 1]) {
      const tampered = Buffer.from(sealed);
      tampered[at]! ^= 0x80;
      expectDecryptionFailed(() => aeadOpen(key, tampered, aad));
    }
  });

  it('fails under another key, a key of the wrong size, or input shorter than nonce and tag', () => {
    const sealed = aeadSeal(key, plaintext, aad, countingRandom());
    expectDecryptionFailed(() => aeadOpen(Buffer.alloc(AEAD_KEY_BYTES, 0x22), sealed, aad));
    expectDecryptionFailed(() => aeadOpen(key.subarray(0, 16), sealed, aad));
    expectDecryptionFailed(() => aeadOpen(key, sealed.subarray(0, 27), aad));
    expectDecryptionFailed(() => aeadOpen(key, sealed.subarray(0, sealed.length - 1), aad));
    expectDecryptionFailed(() => aeadOpen(key, Buffer.alloc(0), aad));
  });

  it('keeps the underlying cause off the message', () => {
    const error = decryptionFailed(new Error('Unsupported state or unable to authenticate data'));
    expect(error.message).toBe('decryption failed');
    expect(error.status).toBe(500);
  });
});
