/** The composition root: configuration in, concrete services out. The only file that knows them all. */
import { createKeyHasher, secureRandom } from '../crypto/index.js';
import { KeyService } from '../keys/index.js';
import { createStore, type Store } from '../store/index.js';
import { systemClock, type Clock } from '../shared/clock.js';
import type { RandomBytes } from '../shared/ids.js';
import type { AppConfig } from './config.js';
import { loadMasterKey, sqlitePath } from './data-dir.js';

export interface Services {
  readonly store: Store;
  readonly keys: KeyService;
  readonly clock: Clock;
  readonly random: RandomBytes;
  close(): Promise<void>;
}

export interface OpenServicesOptions {
  readonly clock?: Clock;
  readonly random?: RandomBytes;
  readonly migrate?: boolean;
  readonly masterKey?: Uint8Array;
}

export function openStore(config: Pick<AppConfig, 'dataDir' | 'databaseUrl'>): Store {
  return config.databaseUrl !== undefined
    ? createStore({ dialect: 'postgres', url: config.databaseUrl })
    : createStore({ dialect: 'sqlite', file: sqlitePath(config.dataDir) });
}

export async function openServices(config: AppConfig, options: OpenServicesOptions = {}): Promise<Services> {
  const masterKey = options.masterKey ?? loadMasterKey(config.dataDir);
  const store = openStore(config);
  try {
    if (options.migrate !== false) await store.migrate();
  } catch (error) {
    await store.close();
    throw error;
  }
  const clock = options.clock ?? systemClock;
  const random = options.random ?? secureRandom;
  const keys = new KeyService({
    db: store.db,
    dialect: store.dialect,
    clock,
    random,
    hasher: createKeyHasher(masterKey),
    config: config.keyPolicy,
  });
  return {
    store,
    keys,
    clock,
    random,
    async close() {
      await keys.stop().catch(() => undefined);
      await store.close();
    },
  };
}
