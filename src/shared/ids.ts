/** Public identifiers: `key_` + 22 base62 characters (about 131 bits). */
import { encodeBase62 } from './base62.js';

export type RandomBytes = (size: number) => Uint8Array;

export const KEY_ID_BODY_LENGTH = 22;
export const KEY_ID_RE = /^key_[0-9A-Za-z]{22}$/;

export function newKeyIdBody(random: RandomBytes): string {
  return encodeBase62(random(16), KEY_ID_BODY_LENGTH);
}

export function isKeyId(value: string): boolean {
  return KEY_ID_RE.test(value);
}

/** Request ids: a random per-process prefix and a counter, so no random bytes per request. */
export function requestIdGenerator(random: RandomBytes): () => string {
  const prefix = encodeBase62(random(8), 11);
  let counter = 0;
  return () => `req_${prefix}${(counter++).toString(36)}`;
}
