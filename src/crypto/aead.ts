/**
 * AES-256-GCM with a random 96-bit nonce: the one AEAD the vault uses. The output is
 * nonce ‖ ciphertext ‖ tag; every failure to open is the same opaque error.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { AppError } from '../shared/errors.js';
import type { RandomBytes } from '../shared/ids.js';

const NONCE_BYTES = 12;
const TAG_BYTES = 16;
export const AEAD_KEY_BYTES = 32;

export function aeadSeal(key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array, random: RandomBytes): Buffer {
  const nonce = random(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(aad);
  const body = cipher.update(plaintext);
  const tail = cipher.final();
  return Buffer.concat([nonce, body, tail, cipher.getAuthTag()]);
}

export function aeadOpen(key: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Buffer {
  if (key.length !== AEAD_KEY_BYTES || sealed.length < NONCE_BYTES + TAG_BYTES) throw decryptionFailed();
  try {
    const nonce = sealed.subarray(0, NONCE_BYTES);
    const tag = sealed.subarray(sealed.length - TAG_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', key, nonce);
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    const body = decipher.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES));
    return Buffer.concat([body, decipher.final()]);
  } catch (cause) {
    throw decryptionFailed(cause);
  }
}

/** Deliberately says nothing that would help an attacker tell one failure from another. */
export function decryptionFailed(cause?: unknown): AppError {
  return new AppError('ERR_DECRYPTION_FAILED', 'decryption failed', cause === undefined ? {} : { cause });
}
