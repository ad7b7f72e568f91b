/**
 * Before `init`, `serve` or `migrate` touch a database: make sure the master key this process
 * holds is the database's. The database keeps the key's check value; a missing key or another
 * key is refused (exit 1, saying which key is expected and how to give it), and a new key is
 * made only for a database that has no data and no check value. A pure decision
 * (`decideMasterKey`) comes first, then the steps it calls for.
 */
import {
  KEY_CHECK_SCHEME,
  createKeyHasher,
  createLocalKekProvider,
  deriveSecret,
  keyCheckFingerprint,
  masterKeyCheck,
} from '../crypto/index.js';
import { parseKey } from '../keys/index.js';
import { probeVault, type VaultProbeResult } from '../secrets/index.js';
import { readKeyCheckState, recordKeyCheck, type KeyCheckState, type RecordedKeyCheck, type Store } from '../store/index.js';
import type { Clock } from '../shared/clock.js';
import type { RandomBytes } from '../shared/ids.js';
import type { AppConfig } from './config.js';
import { StartRefusedError } from './defaults.js';
import {
  assertPrivateDatabaseFiles,
  createMasterKey,
  findMasterKey,
  masterKeyPath,
  prepareDataDir,
  readRootToken,
  removeCreatedMasterKey,
  type FoundMasterKey,
} from './data-dir.js';
import { openKekProvider } from './kek-config.js';
import { openStore } from './services.js';

export type StartMode = 'init' | 'serve' | 'migrate';

export type MasterKeyDecision =
  /** The key is the one recorded. */
  | { readonly action: 'proceed' }
  /** An empty database: record this key's check value, making the key first when there is none. */
  | { readonly action: 'record-new'; readonly makeKey: boolean }
  /** An older database with data and no check value: record it only if the key opens the data. */
  | { readonly action: 'record-tried' }
  /** `migrate` on an empty database without a key: the schema needs none. */
  | { readonly action: 'migrate-only' }
  | { readonly action: 'refuse'; readonly reason: 'missing' | 'mismatch' };

export interface MasterKeyDecisionInput {
  readonly mode: StartMode;
  /** The check value of the key this process holds, if it holds one. */
  readonly keyCheck: string | undefined;
  readonly state: KeyCheckState;
}

export function decideMasterKey({ mode, keyCheck, state }: MasterKeyDecisionInput): MasterKeyDecision {
  if (state.recorded !== undefined) {
    if (keyCheck === undefined) return { action: 'refuse', reason: 'missing' };
    return keyCheck === state.recorded.check_value ? { action: 'proceed' } : { action: 'refuse', reason: 'mismatch' };
  }
  if (state.hasData) return keyCheck === undefined ? { action: 'refuse', reason: 'missing' } : { action: 'record-tried' };
  if (keyCheck !== undefined) return { action: 'record-new', makeKey: false };
  return mode === 'migrate' ? { action: 'migrate-only' } : { action: 'record-new', makeKey: true };
}

export interface PreparedStart {
  /** Undefined only after `migrate` on an empty database without a key. */
  readonly masterKey: Buffer | undefined;
  /** Whether this start made the master key file (a new data directory and database). */
  readonly created: boolean;
  /** The check value the database holds now, if any. */
  readonly keyCheck: RecordedKeyCheck | undefined;
  /** Migrations applied by this start. */
  readonly migrations: string[];
  /** The store's password-free description. */
  readonly database: string;
}

export interface PrepareStartOptions {
  readonly mode: StartMode;
  readonly env?: NodeJS.ProcessEnv;
  readonly clock: Clock;
  readonly random: RandomBytes;
}

/**
 * Checks the data directory and database files, finds the master key, and refuses, records or
 * (for a new database only) makes it; migrates the database once the key is settled. Nothing is
 * written (no key file, no migration, no root token) when it refuses.
 */
export async function prepareStart(config: AppConfig, options: PrepareStartOptions): Promise<PreparedStart> {
  const env = options.env ?? process.env;
  const sqlite = config.databaseUrl === undefined;
  // `migrate` on PostgreSQL needs no data directory; everything else keeps files there.
  prepareDataDir(config.dataDir, { create: sqlite || options.mode !== 'migrate' });
  if (sqlite) assertPrivateDatabaseFiles(config.dataDir);
  let found = findMasterKey(config.dataDir, env);
  const store = openStore(config);
  try {
    const state = await readKeyCheckState(store);
    const keyCheck = found === undefined ? undefined : masterKeyCheck(found.key);
    const decision = decideMasterKey({ mode: options.mode, keyCheck, state });
    if (decision.action === 'refuse') {
      throw new StartRefusedError(refusalMessage(config, store, decision.reason, state.recorded?.check_value, found));
    }
    let origin: RecordedKeyCheck['origin'] = 'new';
    if (decision.action === 'record-tried' && found !== undefined) {
      const tried = await tryKeyOnData(config, store, found.key, options.random);
      if (tried === 'fails') throw new StartRefusedError(refusalMessage(config, store, 'mismatch', undefined, found));
      origin = tried === 'opens' ? 'verified' : 'unverified';
    }
    const migrations = await store.migrate();
    if (decision.action === 'proceed' || decision.action === 'migrate-only') {
      return { masterKey: found?.key, created: false, keyCheck: state.recorded, migrations, database: store.description };
    }
    const created = decision.action === 'record-new' && decision.makeKey;
    if (created) found = createMasterKey(config.dataDir);
    const key = found!.key;
    const mine: RecordedKeyCheck = {
      scheme: KEY_CHECK_SCHEME,
      check_value: masterKeyCheck(key),
      origin,
      created_at: new Date(options.clock.now()).toISOString(),
    };
    const held = await recordKeyCheck(store, mine);
    if (held.check_value !== mine.check_value) {
      // Another server recorded its key first (two starts on one new database).
      if (created) removeCreatedMasterKey(config.dataDir);
      throw new StartRefusedError(refusalMessage(config, store, created ? 'missing' : 'mismatch', held.check_value, created ? undefined : found));
    }
    return { masterKey: key, created, keyCheck: held, migrations, database: store.description };
  } finally {
    await store.close();
  }
}

/**
 * Whether a key opens the data of a database that has no check value yet: the data directory's
 * root token against its stored hash, then the newest sealed secret (local KEKs derive from the
 * master key; with PKCS#11 a kept digest tells). The first answer that can tell decides.
 */
async function tryKeyOnData(config: AppConfig, store: Store, masterKey: Buffer, random: RandomBytes): Promise<VaultProbeResult> {
  const token = readRootToken(config.dataDir);
  const parsed = token === undefined ? undefined : parseKey(token);
  if (parsed !== undefined) {
    const row = await store.db
      .selectFrom('api_keys')
      .select(['key_hash', 'hash_version'])
      .where('id', '=', parsed.keyId)
      .executeTakeFirst();
    if (row?.key_hash) {
      return createKeyHasher(masterKey).matches(parsed.keyId, parsed.secret, row.key_hash, row.hash_version) ? 'opens' : 'fails';
    }
  }
  const digestKey = deriveSecret(masterKey, 'secret-digest:v1');
  const local = createLocalKekProvider(masterKey, random);
  try {
    const result = await probeVault({ db: store.db, kek: local, digestKey, kekFromMasterKey: true });
    if (result !== 'nothing') return result;
  } finally {
    await local.close();
  }
  if (config.kek.provider !== 'pkcs11') return 'nothing';
  const token11 = openKekProvider(config.kek, masterKey, random);
  try {
    return await probeVault({ db: store.db, kek: token11, digestKey, kekFromMasterKey: false });
  } finally {
    await token11.close();
  }
}

function refusalMessage(
  config: AppConfig,
  store: Store,
  reason: 'missing' | 'mismatch',
  expected: string | undefined,
  found: FoundMasterKey | undefined,
): string {
  const which = expected === undefined ? 'the master key it was written with' : `master key ${keyCheckFingerprint(expected)}`;
  const problem =
    reason === 'missing' || found === undefined
      ? `no master key was found (no KEYSMITH_MASTER_KEY, no ${masterKeyPath(config.dataDir)})`
      : `the master key from ${found.source} (${keyCheckFingerprint(masterKeyCheck(found.key))}) is not that key`;
  return [
    `refusing to start: ${store.description} holds data sealed under ${which}, and ${problem}.`,
    `Give this server that key: put it in ${masterKeyPath(config.dataDir)} (mode 0600) or set KEYSMITH_MASTER_KEY ` +
      '(with KEYSMITH_KEK_PROVIDER=pkcs11 the token holds the KEKs, and the master key is still needed). ' +
      'Keysmith never makes a new master key for a database that has one; see docs/multi-server.md.',
  ].join('\n');
}
