export { createStore, isPostgresUrl, type Store, type StoreOptions } from './create-db.js';
export { sqliteDialect, postgresDialect, dialectNamed, type StoreDialect, type DialectName } from './dialect.js';
export type {
  Database,
  ApiKeysTable,
  KeyLabelsTable,
  KeyUsageTable,
  AuditEventsTable,
  SecretsTable,
  SecretVersionsTable,
  KekVersionsTable,
  RotationPoliciesTable,
  RotationRunsTable,
  RotationRunStepsTable,
  RotationRevocationsTable,
  LeasesTable,
  IncidentsTable,
  MasterKeyCheckTable,
} from './schema.js';
export { migrations } from './migrations/index.js';
export { isUniqueViolation } from './errors.js';
export { readKeyCheckState, readRecordedKeyCheck, recordKeyCheck, tableExists, type KeyCheckState, type RecordedKeyCheck } from './master-key-check.js';
