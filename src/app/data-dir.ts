/**
 * The data directory: master key (0600), SQLite database, and the root token file (0600) that
 * lets the local CLI work without hunting for it. `init` creates it; `serve` creates it on
 * first start.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MASTER_KEY_FILE, createMasterKeyFile, decodeMasterKey, readMasterKeyFile } from '../crypto/index.js';

export const ROOT_TOKEN_FILE = 'root-token';
export const SQLITE_FILE = 'keysmith.db';

export function masterKeyPath(dataDir: string): string {
  return join(dataDir, MASTER_KEY_FILE);
}

export function rootTokenPath(dataDir: string): string {
  return join(dataDir, ROOT_TOKEN_FILE);
}

export function sqlitePath(dataDir: string): string {
  return join(dataDir, SQLITE_FILE);
}

export function isInitialised(dataDir: string, env: NodeJS.ProcessEnv = process.env): boolean {
  return env.KEYSMITH_MASTER_KEY !== undefined || existsSync(masterKeyPath(dataDir));
}

/** Creates the directory (0700) and master key; returns false if they already existed. */
export function ensureDataDir(dataDir: string, env: NodeJS.ProcessEnv = process.env): boolean {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  if (isInitialised(dataDir, env)) return false;
  createMasterKeyFile(masterKeyPath(dataDir));
  return true;
}

export function loadMasterKey(dataDir: string, env: NodeJS.ProcessEnv = process.env): Buffer {
  if (env.KEYSMITH_MASTER_KEY !== undefined) return decodeMasterKey(env.KEYSMITH_MASTER_KEY, 'KEYSMITH_MASTER_KEY');
  return readMasterKeyFile(masterKeyPath(dataDir));
}

export function writeRootToken(dataDir: string, token: string): string {
  const path = rootTokenPath(dataDir);
  writeFileSync(path, `${token}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
  return path;
}

export function readRootToken(dataDir: string): string | undefined {
  const path = rootTokenPath(dataDir);
  if (!existsSync(path)) return undefined;
  return readFileSync(path, 'utf8').trim() || undefined;
}
