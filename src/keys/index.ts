export {
  KeyService,
  SERVICE_TARGET,
  type KeyTarget,
  DEFAULT_KEY_POLICY,
  type KeyPolicyConfig,
  type KeyServiceDeps,
  type IssueKeyInput,
  type IssueTokenInput,
  type UpdateKeyInput,
  type RotateKeyInput,
  type IssuedKey,
  type RotatedKey,
  type ListKeysFilter,
  type KeyPage,
  type Principal,
  type AuthResult,
  type AuthFailure,
} from './key-service.js';
export { VERIFY_CODES, type VerifyCode, type VerifyInput, type VerifyOutcome } from './verifier.js';
export { KEY_STATUSES, type KeyRecord, type KeyStatus, type KeyKind, type RateLimit } from './key-record.js';
export { parseKey, formatKey, checksum, MAX_KEY_LENGTH, PREFIX_RE, KEY_ENVS, type KeyEnv, type ParsedKey } from './key-format.js';
export type { KeyUsage, UsageMinute } from './usage.js';
export { newKeyRow, successorRow, unrotatableReason, type KeySettings, type NewKeyRowMeta, type SuccessorRow, type SuccessorOptions } from './key-row.js';
export {
  IncidentService,
  DEFAULT_REVOKE_BATCH,
  DEFAULT_ROTATE_BATCH,
  type IncidentServiceDeps,
  type IncidentAction,
  type IncidentStatus,
  type IncidentPlan,
  type PlannedKey,
  type IncidentRecord,
  type IncidentRotatedKey,
  type IncidentRunOptions,
  type RevokeIncidentResult,
  type RotateIncidentResult,
  type IncidentPage,
} from './incidents.js';
export { parseSelector, formatSelector, MAX_SELECTOR_KEY_IDS, MAX_SELECTOR_LENGTH, type IncidentSelector } from './incident-selector.js';
