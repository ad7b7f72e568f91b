/** The composition root: configuration in, concrete services out. The only file that knows them all. */
import { createKeyHasher, deriveSecret, keyCheckFingerprint, masterKeyCheck, secureRandom, type KekProvider } from '../crypto/index.js';
import { openKekProvider } from './kek-config.js';
import { createAuditLog, deriveAuditKeys, type AuditLog } from '../audit/index.js';
import { IncidentService, KeyService } from '../keys/index.js';
import { createEgress, createProgramRegistry, type Resolver } from '../outbound/index.js';
import { KekService, SecretService, type SecretPolicyConfig } from '../secrets/index.js';
import { createRotationModule, type RotationEngine, type RotationPolicyService, type ConnectorRegistry } from '../rotation/index.js';
import { createStore, readRecordedKeyCheck, type Store } from '../store/index.js';
import { StartRefusedError } from './defaults.js';
import { systemClock, type Clock } from '../shared/clock.js';
import type { RandomBytes } from '../shared/ids.js';
import type { AppConfig } from './config.js';
import { loadMasterKey, sqlitePath } from './data-dir.js';

export interface Services {
  readonly store: Store;
  readonly audit: AuditLog;
  readonly keys: KeyService;
  readonly incidents: IncidentService;
  readonly secrets: SecretService;
  readonly kek: KekService;
  readonly rotationPolicies: RotationPolicyService;
  readonly rotation: RotationEngine;
  readonly connectors: ConnectorRegistry;
  readonly clock: Clock;
  readonly random: RandomBytes;
  close(): Promise<void>;
}

export interface OpenServicesOptions {
  readonly clock?: Clock;
  readonly random?: RandomBytes;
  readonly migrate?: boolean;
  readonly masterKey?: Uint8Array;
  /** The key-encryption key provider; by default the one `config.kek` names. */
  readonly kekProvider?: KekProvider;
  readonly secretPolicy?: Partial<SecretPolicyConfig>;
  /** DNS for egress checks (tests); the system resolver by default. */
  readonly resolver?: Resolver;
}

export function openStore(config: Pick<AppConfig, 'dataDir' | 'databaseUrl'>): Store {
  return config.databaseUrl !== undefined
    ? createStore({ dialect: 'postgres', url: config.databaseUrl })
    : createStore({ dialect: 'sqlite', file: sqlitePath(config.dataDir) });
}

export async function openServices(config: AppConfig, options: OpenServicesOptions = {}): Promise<Services> {
  const masterKey = options.masterKey ?? loadMasterKey(config.dataDir);
  const clock = options.clock ?? systemClock;
  const random = options.random ?? secureRandom;
  const store = openStore(config);
  let kekProvider: KekProvider | undefined;
  try {
    // Every way in (serve, init, offline commands) meets this: a key that is not the database's
    // would answer NOT_FOUND for every key and fail every secret, or write what no one can read.
    const recorded = await readRecordedKeyCheck(store);
    const given = masterKeyCheck(masterKey);
    if (recorded !== undefined && recorded.check_value !== given) {
      throw new StartRefusedError(
        `the master key given is ${keyCheckFingerprint(given)}, and ${store.description} was set up with ` +
          `${keyCheckFingerprint(recorded.check_value)}; give it that key (master.key in the data directory or KEYSMITH_MASTER_KEY)`,
      );
    }
    if (options.migrate !== false) await store.migrate();
    kekProvider = options.kekProvider ?? openKekProvider(config.kek, masterKey, random);
  } catch (error) {
    await store.close();
    throw error;
  }
  const audit = createAuditLog(deriveAuditKeys(masterKey));
  const keys = new KeyService({
    db: store.db,
    audit,
    dialect: store.dialect,
    clock,
    random,
    hasher: createKeyHasher(masterKey),
    config: config.keyPolicy,
  });
  const incidents = new IncidentService({ db: store.db, audit, dialect: store.dialect, clock, random, keys });
  const kek = new KekService({ db: store.db, audit, dialect: store.dialect, clock, kek: kekProvider });
  const secrets = new SecretService({
    db: store.db,
    audit,
    dialect: store.dialect,
    clock,
    random,
    kek,
    digestKey: deriveSecret(masterKey, 'secret-digest:v1'),
    // The local provider's master key is in this process: caching opened values exposes nothing new.
    config: { cacheOpenedValues: kekProvider.id === 'local', ...options.secretPolicy },
  });
  const rotationModule = createRotationModule({
    db: store.db,
    audit,
    dialect: store.dialect,
    clock,
    random,
    keys,
    secrets,
    runSecret: deriveSecret(masterKey, 'rotation-run:v1'),
    engine: config.rotation,
    // The operator's configuration file decides what runs may reach: nothing unless listed.
    outbound: {
      egress: createEgress({ allow: config.egress.allow, ...(options.resolver ? { resolver: options.resolver } : {}) }),
      programs: createProgramRegistry(config.programs),
    },
  });
  try {
    if (options.migrate !== false) {
      await kek.initialise();
      // The switch to the keyed chain is on record from the first start of this version.
      await audit.keyChain(store.db, new Date(clock.now()).toISOString());
    }
  } catch (error) {
    await kekProvider.close().catch(() => undefined);
    await store.close();
    throw error;
  }
  return {
    store,
    audit,
    keys,
    incidents,
    secrets,
    kek,
    rotationPolicies: rotationModule.policies,
    rotation: rotationModule.engine,
    connectors: rotationModule.connectors,
    clock,
    random,
    async close() {
      await rotationModule.engine.stop().catch(() => undefined);
      incidents.stop();
      await kek.stop().catch(() => undefined);
      await secrets.stop().catch(() => undefined);
      await keys.stop().catch(() => undefined);
      await kekProvider?.close().catch(() => undefined);
      await store.close();
    },
  };
}
