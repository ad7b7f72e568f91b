/**
 * How a value becomes bytes to seal, and back. The additional authenticated data binds a
 * sealed value to its secret, version and type, so a ciphertext copied onto another row, or
 * read as the other type, fails to open instead of answering with the wrong value.
 */
import { createHmac } from 'node:crypto';
import { SECRET_VALUE_MAX_BYTES } from '../contract/index.js';
import { AppError } from '../shared/errors.js';

export type SecretValue = string | { readonly [field: string]: unknown };
export type ValueType = 'string' | 'json';

export interface EncodedValue {
  readonly type: ValueType;
  readonly bytes: Buffer;
}

export function encodeValue(value: SecretValue): EncodedValue {
  const type: ValueType = typeof value === 'string' ? 'string' : 'json';
  const bytes = Buffer.from(typeof value === 'string' ? value : JSON.stringify(value), 'utf8');
  if (bytes.length > SECRET_VALUE_MAX_BYTES) {
    throw new AppError('ERR_SECRET_VALUE_TOO_LARGE', `a secret value is at most ${SECRET_VALUE_MAX_BYTES} bytes; this one is ${bytes.length}`, {
      details: [{ field: 'value', message: `at most ${SECRET_VALUE_MAX_BYTES} bytes` }],
    });
  }
  return { type, bytes };
}

export function decodeValue(type: ValueType, bytes: Buffer): SecretValue {
  const text = bytes.toString('utf8');
  return type === 'string' ? text : (JSON.parse(text) as SecretValue);
}

export function valueAad(secretId: string, version: number, type: ValueType): Buffer {
  return Buffer.from(`keysmith:secret:v1:${secretId}:${version}:${type}`, 'utf8');
}

/** Keyed MAC of a value, kept to answer idempotent retries (and to tell a master key is the vault's). */
export function valueDigest(digestKey: Uint8Array, type: ValueType, bytes: Uint8Array): string {
  return createHmac('sha256', digestKey).update(type).update('\u0000').update(bytes).digest('base64url');
}
