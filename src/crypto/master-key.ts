/**
 * The master key: 32 random bytes in the data directory (mode 0600), or KEYSMITH_MASTER_KEY.
 * Every server secret is derived from it with HKDF, so the database alone is never enough to
 * test a guessed key.
 */
import { createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { AppError } from '../shared/errors.js';

export const MASTER_KEY_FILE = 'master.key';
const MASTER_KEY_BYTES = 32;

export class MasterKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MasterKeyError';
  }
}

/** Creates a new master key file with mode 0600; refuses to overwrite one. */
export function createMasterKeyFile(path: string): void {
  if (existsSync(path)) throw new MasterKeyError(`${path} already exists; refusing to overwrite a master key`);
  writeFileSync(path, `${randomBytes(MASTER_KEY_BYTES).toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(path, 0o600);
}

/** Reads the master key file, refusing one that group or others can read. */
export function readMasterKeyFile(path: string): Buffer {
  if (!existsSync(path)) throw new MasterKeyError(`master key file ${path} does not exist; run "keysmith init" first`);
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new MasterKeyError(
      `master key file ${path} is readable by others (mode ${mode.toString(8).padStart(4, '0')}); run "chmod 600 ${path}" and start again`,
    );
  }
  return decodeMasterKey(readFileSync(path, 'utf8'), path);
}

export function decodeMasterKey(text: string, source: string): Buffer {
  const bytes = Buffer.from(text.trim(), 'base64');
  if (bytes.length !== MASTER_KEY_BYTES) {
    throw new MasterKeyError(`${source} must hold ${MASTER_KEY_BYTES} bytes in base64`);
  }
  return bytes;
}

/** Derives a purpose-bound 32-byte secret from the master key. */
export function deriveSecret(masterKey: Uint8Array, purpose: string): Buffer {
  if (masterKey.length !== MASTER_KEY_BYTES) throw new AppError('ERR_INTERNAL', 'master key has the wrong size');
  return Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), `keysmith:${purpose}`, 32));
}

/** How the key check value is made; recorded beside it so it can change later. */
export const KEY_CHECK_SCHEME = 'hmac-sha256:v1';
const KEY_CHECK_LABEL = 'keysmith master key check value';

/**
 * The key check value the database keeps (as HSMs keep a KCV): an HMAC of a fixed label under a
 * secret derived from the master key. It tells a server whether it holds the database's master
 * key without holding the key; with 256-bit keys it helps no one guess one.
 */
export function masterKeyCheck(masterKey: Uint8Array): string {
  return createHmac('sha256', deriveSecret(masterKey, 'key-check:v1')).update(KEY_CHECK_LABEL).digest('hex');
}

/** A short form of a key check value for messages and `init` output: `kcv:` and 16 hex digits. */
export function keyCheckFingerprint(check: string): string {
  return `kcv:${check.slice(0, 16)}`;
}
