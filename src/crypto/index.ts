export { secureRandom } from './random.js';
export {
  MASTER_KEY_FILE,
  MasterKeyError,
  createMasterKeyFile,
  readMasterKeyFile,
  decodeMasterKey,
  deriveSecret,
  masterKeyCheck,
  keyCheckFingerprint,
  KEY_CHECK_SCHEME,
} from './master-key.js';
export { createKeyHasher, CURRENT_HASH_VERSION, type KeyHasher } from './key-hasher.js';
export type { KekProvider } from './kek-provider.js';
export { aeadSeal, aeadOpen, AEAD_KEY_BYTES } from './aead.js';
export { createLocalKekProvider } from './local-kek.js';
export { createPkcs11KekProvider, kekObjectLabel, type Pkcs11KekOptions } from './pkcs11-kek.js';
export {
  sealEnvelope,
  openEnvelope,
  rewrapEnvelope,
  ENVELOPE_FORMAT,
  ENVELOPE_ALG,
  type Envelope,
} from './envelope.js';
