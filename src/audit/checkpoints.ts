/**
 * Signed checkpoints of the chain's head (as Certificate Transparency signs tree heads and
 * CloudTrail signs digest files): `{seq, hash, time}` signed with an Ed25519 key derived from
 * the master key, one JSON line each, kept outside the database. A log that later ends before a
 * checkpoint, or holds another hash at its seq, was truncated or rewritten, however consistent
 * the database makes itself look.
 */
import * as crypto from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';

export const CHECKPOINT_VERSION = 1;

export interface Checkpoint {
  readonly v: 1;
  readonly seq: number;
  readonly hash: string;
  readonly time: string;
  /** Which key signed it: the first 16 hex digits of the SHA-256 of the raw public key. */
  readonly keyId: string;
  /** Ed25519 signature, base64. */
  readonly sig: string;
}

/** A checkpoint as read from somewhere, with where it came from so a problem can name it. */
export interface CheckpointEntry {
  readonly source: string;
  readonly line: number;
  /** Undefined when the line is not a checkpoint at all. */
  readonly checkpoint: Checkpoint | undefined;
}

export interface CheckpointPublicKey {
  readonly keyId: string;
  /** The raw 32-byte Ed25519 public key, base64. */
  readonly base64: string;
  readonly pem: string;
  /** SHA-256 of the raw public key, hex, in pairs: to compare by eye or over the phone. */
  readonly fingerprint: string;
}

export interface CheckpointKey {
  readonly publicKey: CheckpointPublicKey;
  sign(seq: number, hash: string, time: string): Checkpoint;
  /** Whether the checkpoint carries a good signature by this key. */
  verify(checkpoint: Checkpoint): boolean;
}

/** PKCS#8 DER header of an Ed25519 private key (RFC 8410): the 32-byte seed follows. */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** The checkpoint signing key from a 32-byte seed (`deriveSecret(masterKey, 'audit-checkpoint:v1')`). */
export function createCheckpointKey(seed: Uint8Array): CheckpointKey {
  if (seed.length !== 32) throw new Error('the audit checkpoint seed must hold 32 bytes');
  const privateKey = crypto.createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const publicKey = crypto.createPublicKey(privateKey);
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const digest = crypto.createHash('sha256').update(raw).digest('hex');
  const keyId = digest.slice(0, 16);
  return {
    publicKey: {
      keyId,
      base64: raw.toString('base64'),
      pem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
      fingerprint: digest.match(/../g)!.join(':'),
    },
    sign(seq, hash, time) {
      const sig = crypto.sign(null, signedText(seq, hash, time, keyId), privateKey).toString('base64');
      return { v: CHECKPOINT_VERSION, seq, hash, time, keyId, sig };
    },
    verify(checkpoint) {
      if (checkpoint.keyId !== keyId) return false;
      try {
        return crypto.verify(null, signedText(checkpoint.seq, checkpoint.hash, checkpoint.time, checkpoint.keyId), publicKey, Buffer.from(checkpoint.sig, 'base64'));
      } catch {
        return false;
      }
    },
  };
}

/** The exact bytes signed: every field, in a fixed order, under a label no other signature uses. */
function signedText(seq: number, hash: string, time: string, keyId: string): Buffer {
  return Buffer.from(`keysmith-audit-checkpoint:v${CHECKPOINT_VERSION}\n${seq}\n${hash}\n${time}\n${keyId}`, 'utf8');
}

/** One line of the checkpoints file, fields in a fixed order. */
export function formatCheckpoint(checkpoint: Checkpoint): string {
  const { v, seq, hash, time, keyId, sig } = checkpoint;
  return JSON.stringify({ v, seq, hash, time, keyId, sig });
}

export function parseCheckpoint(text: string): Checkpoint | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const c = value as Record<string, unknown>;
  const ok =
    c.v === CHECKPOINT_VERSION &&
    typeof c.seq === 'number' &&
    Number.isSafeInteger(c.seq) &&
    c.seq > 0 &&
    typeof c.hash === 'string' &&
    /^[0-9a-f]{64}$/.test(c.hash) &&
    typeof c.time === 'string' &&
    c.time.length <= 40 &&
    typeof c.keyId === 'string' &&
    /^[0-9a-f]{16}$/.test(c.keyId) &&
    typeof c.sig === 'string' &&
    c.sig.length <= 200;
  return ok ? { v: CHECKPOINT_VERSION, seq: c.seq as number, hash: c.hash as string, time: c.time as string, keyId: c.keyId as string, sig: c.sig as string } : undefined;
}

/** The checkpoints in a JSON-lines text; blank lines are skipped, anything else that is not a checkpoint is kept as a bad entry. */
export function parseCheckpoints(text: string, source: string): CheckpointEntry[] {
  const entries: CheckpointEntry[] = [];
  text.split('\n').forEach((line, index) => {
    if (line.trim() === '') return;
    entries.push({ source, line: index + 1, checkpoint: parseCheckpoint(line) });
  });
  return entries;
}

/** The checkpoints file's entries; none when it does not exist (a server that never wrote one). */
export function readCheckpointFile(path: string): CheckpointEntry[] {
  if (!existsSync(path)) return [];
  return parseCheckpoints(readFileSync(path, 'utf8'), path);
}
