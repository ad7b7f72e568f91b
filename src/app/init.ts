/**
 * `keysmith init`: data directory, master key, migrations and a root token shown once. A master
 * key is made only for a new database; one that has data needs its own key given.
 */
import { keyCheckFingerprint, secureRandom } from '../crypto/index.js';
import { systemClock } from '../shared/clock.js';
import type { AppConfig } from './config.js';
import { readRootToken, rootTokenPath, writeRootToken } from './data-dir.js';
import { prepareStart } from './master-key-guard.js';
import { openServices, type Services } from './services.js';

export interface InitResult {
  readonly dataDir: string;
  readonly created: boolean;
  /** Set when a root token was issued by this call: show it once. */
  readonly rootToken?: string;
  readonly rootTokenId?: string;
  readonly rootTokenFile: string;
  readonly migrations: string[];
  /** The short form of the master key's check value the database holds (`kcv:…`). */
  readonly masterKey: string;
}

export interface InitOptions {
  /** Issue a fresh root token even if the data directory already has one. */
  readonly newRootToken?: boolean;
}

export async function initialise(config: AppConfig, options: InitOptions = {}): Promise<InitResult> {
  const prepared = await prepareStart(config, { mode: 'init', clock: systemClock, random: secureRandom });
  const { created, migrations } = prepared;
  const services = await openServices(config, prepared.masterKey ? { masterKey: prepared.masterKey } : {});
  try {
    const token = await ensureRootToken(services, config, created || options.newRootToken === true);
    const masterKey = prepared.keyCheck ? keyCheckFingerprint(prepared.keyCheck.check_value) : '';
    return { dataDir: config.dataDir, created, rootTokenFile: rootTokenPath(config.dataDir), migrations, masterKey, ...token };
  } finally {
    await services.close();
  }
}

/**
 * Issues a root token when asked to, or when the data directory has none, and keeps it in the
 * root-token file (0600). Shared by `init` and the first start of `serve`.
 */
export async function ensureRootToken(
  services: Services,
  config: AppConfig,
  force: boolean,
): Promise<Pick<InitResult, 'rootToken' | 'rootTokenId'>> {
  if (!force && readRootToken(config.dataDir) !== undefined) return {};
  const issued = await services.keys.issueToken(
    { actor: 'system:init' },
    ['*'],
    { scopes: ['*'], owner: 'root', purpose: 'root token from keysmith init', ttl: `${Math.floor(config.keyPolicy.maxTtlMs / 1000)}s` },
  );
  writeRootToken(config.dataDir, issued.key);
  return { rootToken: issued.key, rootTokenId: issued.record.id };
}
