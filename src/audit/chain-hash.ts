/**
 * How an event's hash is made. Events written before the chain was keyed carry plain SHA-256
 * ('sha256') and keep verifying; every event since carries HMAC-SHA256 under the chain key
 * ('hmac-sha256:v1'), a key derived from the master key that the database never holds, so
 * someone with the database alone cannot write an event that verifies.
 */
import * as crypto from 'node:crypto';
import type { AuditEventsTable } from '../store/index.js';

export const SCHEME_SHA256 = 'sha256';
export const SCHEME_KEYED = 'hmac-sha256:v1';
/** The first keyed event of every log: where the chain switched to the keyed scheme. */
export const KEYED_MARKER_ACTION = 'audit.chain.keyed';

export type ChainRow = Omit<AuditEventsTable, 'hash' | 'scheme'>;

export interface ChainHasher {
  /** The keyed hash new events get. */
  keyed(row: ChainRow): string;
  /** The hash a stored row should have under its scheme, or undefined for a scheme this version does not know. */
  check(row: ChainRow, scheme: string): string | undefined;
}

/** The fields every scheme covers, in a fixed order. */
export function canonicalEvent(row: ChainRow): string {
  return JSON.stringify([row.seq, row.time, row.actor, row.action, row.target, row.request_id, row.source_ip, row.data, row.prev_hash]);
}

/** One-shot SHA-256 where Node has it (20.12+, about twice as fast on short input), else a Hash object. */
const sha256Hex: (text: string) => string =
  typeof (crypto as { hash?: unknown }).hash === 'function'
    ? (text) => (crypto as unknown as { hash(alg: string, data: string, enc: string): string }).hash('sha256', text, 'hex')
    : (text) => crypto.createHash('sha256').update(text).digest('hex');

/** The plain SHA-256 of the events written before the chain was keyed. */
export function legacyHash(row: ChainRow): string {
  return sha256Hex(canonicalEvent(row));
}

/**
 * HMAC-SHA256 (RFC 2104) written out: H((K ^ opad) || H((K ^ ipad) || message)), with the padded
 * keys laid once into reusable buffers and two one-shot hashes per event. The same bytes as
 * `createHmac` (a test holds it to that) at a fraction of its per-call cost, which matters when a
 * bulk revocation hashes a hundred thousand events in one transaction. Without one-shot hashing
 * (Node before 20.12) it is `createHmac` with a key object made once.
 */
export function createChainHasher(chainKey: Uint8Array): ChainHasher {
  if (chainKey.length < 32 || chainKey.length > 64) throw new Error('the audit chain key must hold 32 to 64 bytes');
  const inner = Buffer.alloc(64, 0x36);
  const outer = Buffer.alloc(96, 0x5c);
  for (let i = 0; i < chainKey.length; i++) {
    inner[i]! ^= chainKey[i]!;
    outer[i]! ^= chainKey[i]!;
  }
  const oneShot = (crypto as unknown as { hash?: (alg: string, data: Uint8Array, enc: string) => Buffer | string }).hash;
  let keyed: (row: ChainRow) => string;
  if (typeof oneShot === 'function') {
    // [K ^ ipad | message…]: the message is written after the pad, the buffer grown when a longer one comes.
    let message = Buffer.alloc(64 + 4096);
    inner.copy(message, 0);
    keyed = (row) => {
      const text = canonicalEvent(row);
      if (64 + text.length * 3 > message.length) {
        const grown = Buffer.alloc(64 + text.length * 6);
        inner.copy(grown, 0);
        message = grown;
      }
      const length = message.write(text, 64, 'utf8');
      (oneShot('sha256', message.subarray(0, 64 + length), 'buffer') as Buffer).copy(outer, 64);
      return oneShot('sha256', outer, 'hex') as string;
    };
  } else {
    const key = crypto.createSecretKey(Buffer.from(chainKey));
    keyed = (row) => crypto.createHmac('sha256', key).update(canonicalEvent(row)).digest('hex');
  }
  return {
    keyed,
    check(row, scheme) {
      if (scheme === SCHEME_KEYED) return keyed(row);
      if (scheme === SCHEME_SHA256) return legacyHash(row);
      return undefined;
    },
  };
}
