/** Fixed-width base62 used in key ids, secrets and checksums. */
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** Encodes bytes as exactly `width` base62 characters (big-endian, zero-padded). */
export function encodeBase62(bytes: Uint8Array, width: number): string {
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  return encodeBigBase62(value, width);
}

export function encodeBigBase62(input: bigint, width: number): string {
  let value = input;
  const out = new Array<string>(width);
  for (let i = width - 1; i >= 0; i--) {
    out[i] = ALPHABET[Number(value % 62n)]!;
    value /= 62n;
  }
  if (value !== 0n) throw new RangeError('value does not fit in the requested width');
  return out.join('');
}

/** Encodes a uint32 as exactly `width` base62 characters without BigInt (hot path). */
export function encodeUint32Base62(input: number, width: number): string {
  let value = input >>> 0;
  let out = '';
  for (let i = 0; i < width; i++) {
    out = ALPHABET[value % 62]! + out;
    value = Math.floor(value / 62);
  }
  return out;
}

export const BASE62_RE_CLASS = '[0-9A-Za-z]';
