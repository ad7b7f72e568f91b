/**
 * The issued key format: `<prefix>_<env>_<id>_<secret><checksum>`.
 *
 * - prefix: `ks` by default (2–16 lowercase letters and digits, starting with a letter)
 * - env: `live` or `test`
 * - id: the 22 base62 characters of the public key id (`key_<id>`), so a key is looked up by
 *   primary key and logs can name it without its secret
 * - secret: 32 random bytes as 43 base62 characters
 * - checksum: CRC32 of everything before it, as 6 base62 characters, so scanners and `verify`
 *   reject look-alike text without a database round trip
 */
import { encodeBase62, encodeUint32Base62 } from '../shared/base62.js';
import type { RandomBytes } from '../shared/ids.js';

export type KeyEnv = 'live' | 'test';
export const KEY_ENVS: readonly KeyEnv[] = ['live', 'test'];
export const DEFAULT_PREFIX = 'ks';
export const MANAGEMENT_PREFIX = 'ksm';
export const PREFIX_RE = /^[a-z][a-z0-9]{1,15}$/;
const SECRET_LENGTH = 43;
const CHECKSUM_LENGTH = 6;
const KEY_RE = /^([a-z][a-z0-9]{1,15})_(live|test)_([0-9A-Za-z]{22})_([0-9A-Za-z]{43})([0-9A-Za-z]{6})$/;
/** Longest possible key: keeps the verify body schema tight. */
export const MAX_KEY_LENGTH = 16 + 1 + 4 + 1 + 22 + 1 + SECRET_LENGTH + CHECKSUM_LENGTH;

export interface ParsedKey {
  readonly prefix: string;
  readonly env: KeyEnv;
  /** The full public id, `key_…`. */
  readonly keyId: string;
  readonly secret: string;
}

/** CRC-32 (IEEE) table; computed in JS, which for a short ASCII key beats a call into zlib. */
const CRC_TABLE = (() => {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
})();

/** CRC-32 of an ASCII string (key bodies are ASCII by construction). */
export function crc32Ascii(text: string): number {
  let crc = -1;
  for (let i = 0; i < text.length; i++) crc = CRC_TABLE[(crc ^ text.charCodeAt(i)) & 0xff]! ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}

export function checksum(text: string): string {
  return encodeUint32Base62(crc32Ascii(text), CHECKSUM_LENGTH);
}

/** Builds a key string; the secret is random unless given. */
export function formatKey(prefix: string, env: KeyEnv, idBody: string, random: RandomBytes): string {
  const secret = encodeBase62(random(32), SECRET_LENGTH);
  const body = `${prefix}_${env}_${idBody}_${secret}`;
  return body + checksum(body);
}

/** Parses a presented key, or returns undefined when its shape or checksum is wrong. */
export function parseKey(text: string): ParsedKey | undefined {
  if (text.length > MAX_KEY_LENGTH) return undefined;
  const match = KEY_RE.exec(text);
  if (!match) return undefined;
  const body = text.slice(0, text.length - CHECKSUM_LENGTH);
  if (checksum(body) !== match[5]) return undefined;
  return { prefix: match[1]!, env: match[2] as KeyEnv, keyId: `key_${match[3]!}`, secret: match[4]! };
}
