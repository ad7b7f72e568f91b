export { secureRandom } from './random.js';
export {
  MASTER_KEY_FILE,
  MasterKeyError,
  createMasterKeyFile,
  readMasterKeyFile,
  decodeMasterKey,
  deriveSecret,
} from './master-key.js';
export { createKeyHasher, CURRENT_HASH_VERSION, type KeyHasher } from './key-hasher.js';
