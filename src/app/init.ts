/** `keysmith init`: data directory, master key, migrations and a root token shown once. */
import type { AppConfig } from './config.js';
import { ensureDataDir, readRootToken, rootTokenPath, writeRootToken } from './data-dir.js';
import { openServices } from './services.js';

export interface InitResult {
  readonly dataDir: string;
  readonly created: boolean;
  /** Set when a root token was issued by this call: show it once. */
  readonly rootToken?: string;
  readonly rootTokenId?: string;
  readonly rootTokenFile: string;
  readonly migrations: string[];
}

export interface InitOptions {
  /** Issue a fresh root token even if the data directory already has one. */
  readonly newRootToken?: boolean;
}

export async function initialise(config: AppConfig, options: InitOptions = {}): Promise<InitResult> {
  const created = ensureDataDir(config.dataDir);
  const services = await openServices(config, { migrate: false });
  try {
    const migrations = await services.store.migrate();
    const needsToken = created || options.newRootToken === true || readRootToken(config.dataDir) === undefined;
    if (!needsToken) return { dataDir: config.dataDir, created, rootTokenFile: rootTokenPath(config.dataDir), migrations };
    const issued = await services.keys.issueToken(
      { actor: 'system:init' },
      ['*'],
      { scopes: ['*'], owner: 'root', purpose: 'root token from keysmith init', ttl: `${Math.floor(config.keyPolicy.maxTtlMs / 1000)}s` },
    );
    const file = writeRootToken(config.dataDir, issued.key);
    return { dataDir: config.dataDir, created, rootToken: issued.key, rootTokenId: issued.record.id, rootTokenFile: file, migrations };
  } finally {
    await services.close();
  }
}
