/**
 * The data directory: master key (0600), SQLite database (0600, with its -wal and -shm), and the
 * root token file (0600) that lets the local CLI work without hunting for it. The directory is
 * 0700; a directory or database others can read or write is refused, as a readable master key is.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MASTER_KEY_FILE, createMasterKeyFile, decodeMasterKey, readMasterKeyFile } from '../crypto/index.js';
import { StartRefusedError } from './defaults.js';

export const ROOT_TOKEN_FILE = 'root-token';
export const SQLITE_FILE = 'keysmith.db';
const SQLITE_COMPANIONS = ['-wal', '-shm', '-journal'] as const;

export function masterKeyPath(dataDir: string): string {
  return join(dataDir, MASTER_KEY_FILE);
}

export function rootTokenPath(dataDir: string): string {
  return join(dataDir, ROOT_TOKEN_FILE);
}

export function sqlitePath(dataDir: string): string {
  return join(dataDir, SQLITE_FILE);
}

/**
 * Makes the directory 0700 when it is missing and `create` is set (the mode is set after
 * creating, so the umask does not decide it); refuses one that group or others can use.
 */
export function prepareDataDir(dataDir: string, options: { readonly create: boolean }): void {
  if (!existsSync(dataDir)) {
    if (!options.create) return;
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    chmodSync(dataDir, 0o700);
    return;
  }
  const stat = statSync(dataDir);
  if (!stat.isDirectory()) throw new StartRefusedError(`data directory ${dataDir} is not a directory`);
  const mode = stat.mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new StartRefusedError(
      `data directory ${dataDir} is open to group or others (mode ${octal(mode)}); run "chmod 700 ${dataDir}" and start again`,
    );
  }
}

/** Refuses a SQLite database (or its -wal, -shm, -journal) that group or others can read or write. */
export function assertPrivateDatabaseFiles(dataDir: string): void {
  const file = sqlitePath(dataDir);
  const open = [file, ...SQLITE_COMPANIONS.map((suffix) => `${file}${suffix}`)].filter(
    (path) => existsSync(path) && (statSync(path).mode & 0o077) !== 0,
  );
  if (open.length === 0) return;
  const modes = open.map((path) => `${path} ${octal(statSync(path).mode & 0o777)}`).join(', ');
  throw new StartRefusedError(
    `the database is open to group or others (${modes}); run "chmod 600 ${open.join(' ')}" and start again`,
  );
}

export interface FoundMasterKey {
  readonly key: Buffer;
  /** Where it came from, for messages: `KEYSMITH_MASTER_KEY` or the file's path. */
  readonly source: string;
}

/** The master key from KEYSMITH_MASTER_KEY or the data directory's file, or undefined if neither is there. */
export function findMasterKey(dataDir: string, env: NodeJS.ProcessEnv = process.env): FoundMasterKey | undefined {
  if (env.KEYSMITH_MASTER_KEY !== undefined) {
    return { key: decodeMasterKey(env.KEYSMITH_MASTER_KEY, 'KEYSMITH_MASTER_KEY'), source: 'KEYSMITH_MASTER_KEY' };
  }
  const path = masterKeyPath(dataDir);
  if (!existsSync(path)) return undefined;
  return { key: readMasterKeyFile(path), source: path };
}

/** Makes a new master key file (0600); only for a database that has none. */
export function createMasterKey(dataDir: string): FoundMasterKey {
  const path = masterKeyPath(dataDir);
  createMasterKeyFile(path);
  return { key: readMasterKeyFile(path), source: path };
}

/** Takes back a master key file this start made, when the database turned out to have another. */
export function removeCreatedMasterKey(dataDir: string): void {
  const path = masterKeyPath(dataDir);
  if (existsSync(path)) unlinkSync(path);
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

function octal(mode: number): string {
  return mode.toString(8).padStart(4, '0');
}
