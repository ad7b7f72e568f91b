/**
 * Database row types. Times are RFC 3339 UTC strings (they sort as text on both dialects);
 * lists and maps are JSON text, so one schema serves SQLite and PostgreSQL alike.
 */

export interface ApiKeysTable {
  id: string;
  kind: 'service' | 'management';
  prefix: string;
  env: 'live' | 'test';
  hash_version: number;
  /** Null once the key is retired. */
  key_hash: string | null;
  owner: string;
  purpose: string;
  /** JSON array of strings. */
  scopes: string;
  /** JSON array of CIDR strings, or null for no allowlist. */
  ip_allowlist: string | null;
  rate_limit_limit: number | null;
  rate_limit_window_ms: number | null;
  expires_at: string;
  created_at: string;
  created_by: string;
  updated_at: string;
  disabled_at: string | null;
  revoked_at: string | null;
  revoke_reason: string | null;
  replaces: string | null;
  replaced_by: string | null;
  grace_ends_at: string | null;
  retired_at: string | null;
}

export interface KeyLabelsTable {
  key_id: string;
  name: string;
  value: string;
}

export interface KeyUsageTable {
  key_id: string;
  /** Start of the minute, RFC 3339. */
  minute: string;
  outcome: string;
  count: number;
}

export interface KeyLastUseTable {
  key_id: string;
  used_at: string;
  ip: string | null;
  user_agent: string | null;
}

export interface AuditEventsTable {
  seq: number;
  time: string;
  actor: string;
  action: string;
  target: string | null;
  request_id: string | null;
  source_ip: string | null;
  /** JSON object; never holds a key or secret value. */
  data: string;
  prev_hash: string;
  hash: string;
  /** How `hash` was made: 'sha256' (before the chain was keyed) or 'hmac-sha256:v1'. */
  scheme: string;
}

export interface AuditHeadTable {
  id: number;
  seq: number;
  hash: string;
  /** The scheme the chain is at; an unkeyed head makes the next append write the `audit.chain.keyed` marker. */
  scheme: string;
}

export interface SecretsTable {
  id: string;
  path: string;
  owner: string;
  description: string;
  /** JSON object of label name → value. */
  labels: string;
  expires_at: string | null;
  max_versions: number;
  /** The highest version number handed out; the next put takes latest_version + 1. */
  latest_version: number;
  created_at: string;
  created_by: string;
  updated_at: string;
  deleted_at: string | null;
  deletion_date: string | null;
}

export interface SecretVersionsTable {
  secret_id: string;
  version: number;
  value_type: 'string' | 'json';
  envelope_format: number;
  alg: string;
  kek_id: string;
  kek_version: number;
  /** Base64 of the wrapped data key; null once destroyed. */
  wrapped_key: string | null;
  /** Base64 of nonce ‖ ciphertext ‖ tag; null once destroyed. */
  sealed: string | null;
  request_token: string | null;
  /** Keyed MAC of the value, kept only to answer idempotent retries; null once destroyed. */
  value_digest: string | null;
  created_at: string;
  created_by: string;
  destroyed_at: string | null;
  /** The vendor's id for the credential this version holds (set by rotation connectors), or null. */
  vendor_id: string | null;
}

export interface SecretStagesTable {
  secret_id: string;
  stage: string;
  version: number;
}

export interface SecretReadsTable {
  secret_id: string;
  version: number;
  principal: string;
  minute: string;
  count: number;
  last_read_at: string;
}

export interface KekVersionsTable {
  provider: string;
  version: number;
  state: 'active' | 'retired';
  created_at: string;
  retired_at: string | null;
}

export interface RotationPoliciesTable {
  name: string;
  /** JSON of the normalised policy; connector settings as given (they name vault paths, never hold secrets). */
  spec: string;
  /** 1 on create, bumped on every change; the check-and-set token. */
  version: number;
  created_at: string;
  created_by: string;
  updated_at: string;
  updated_by: string;
}

export interface RotationRunsTable {
  id: string;
  policy: string | null;
  policy_version: number | null;
  /** JSON of the policy the run follows, as it was when the run started. */
  spec: string;
  target_kind: 'key' | 'secret';
  /** A key id or a secret path. */
  target: string;
  trigger: string;
  reason: string | null;
  scheduled_for: string | null;
  status: string;
  step: string;
  /** JSON of what the run has learnt so far (versions, vendor ids, key ids); never a secret. */
  state: string;
  attempts: number;
  next_at: string;
  lease_owner: string | null;
  lease_until: string | null;
  active_target: string | null;
  error: string | null;
  created_at: string;
  created_by: string;
  updated_at: string;
  promoted_at: string | null;
  finished_at: string | null;
}

export interface RotationRunStepsTable {
  run_id: string;
  seq: number;
  step: string;
  outcome: string;
  started_at: string;
  finished_at: string;
  /** JSON object of flat fields: health-check answers, vendor ids; never a secret. */
  evidence: string;
  error: string | null;
}

export interface RotationRevocationsTable {
  id: string;
  run_id: string;
  /** `old` after a rotation, `new` after a rollback or a discarded run. */
  which: string;
  /** JSON of what names the credential: key id, vault version, vendor id; never its value. */
  credential: string;
  status: string;
  not_before: string;
  next_at: string;
  attempts: number;
  last_error: string | null;
  lease_owner: string | null;
  lease_until: string | null;
  created_at: string;
  done_at: string | null;
}

export interface LeasesTable {
  name: string;
  owner: string;
  expires_at: string;
}

export interface MasterKeyCheckTable {
  id: number;
  scheme: string;
  check_value: string;
  origin: 'new' | 'verified' | 'unverified';
  created_at: string;
}

export interface IncidentsTable {
  /** `inc_` + 22 base62 characters. */
  id: string;
  action: 'revoke' | 'rotate';
  /** JSON of the normalised selector. */
  selector: string;
  reason: string;
  /** `running` while batches commit; `done`, or `failed` with `failure` saying why. */
  status: 'running' | 'done' | 'failed';
  /** Keys revoked or rotated so far. */
  key_count: number;
  /** Keys the selector picked when the incident opened. */
  planned_count: number;
  /** Rotation overlap as given (`24h`); null for revoke. */
  overlap: string | null;
  started_at: string;
  finished_at: string | null;
  created_by: string;
  failure: string | null;
  /** Bumped by every committed batch. */
  updated_at: string;
}

export interface Database {
  api_keys: ApiKeysTable;
  key_labels: KeyLabelsTable;
  key_usage: KeyUsageTable;
  key_last_use: KeyLastUseTable;
  audit_events: AuditEventsTable;
  audit_head: AuditHeadTable;
  secrets: SecretsTable;
  secret_versions: SecretVersionsTable;
  secret_stages: SecretStagesTable;
  secret_reads: SecretReadsTable;
  kek_versions: KekVersionsTable;
  rotation_policies: RotationPoliciesTable;
  rotation_runs: RotationRunsTable;
  rotation_run_steps: RotationRunStepsTable;
  rotation_revocations: RotationRevocationsTable;
  leases: LeasesTable;
  incidents: IncidentsTable;
  master_key_check: MasterKeyCheckTable;
}

