export {
  SecretService,
  versionRow,
  DEFAULT_SECRET_POLICY,
  type SecretServiceDeps,
  type SecretPolicyConfig,
  type PutSecretInput,
  type PutSecretResult,
  type SecretMetadata,
  type SecretVersionInfo,
  type SecretReadResult,
  type SecretReaders,
  type ReadSelector,
  type ListSecretsInput,
} from './secret-service.js';
export { KekService, type KekStatus, type KekVersionStatus, type KekServiceDeps } from './kek-service.js';
export { parseSecretTarget, assertSecretPath, type SecretTarget } from './secret-path.js';
export { encodeValue, decodeValue, valueAad, valueDigest, type SecretValue, type ValueType } from './secret-codec.js';
export { probeVault, type VaultProbeDeps, type VaultProbeResult } from './master-key-probe.js';
