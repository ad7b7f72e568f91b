import type { Migration, MigrationProvider } from 'kysely';
import { keysAndAudit } from './0001-keys-and-audit.js';
import { secretsVault } from './0002-secrets.js';
import { rotationPolicies } from './0003-rotation-policies.js';
import { rotationRuns } from './0004-rotation-runs.js';
import { incidents } from './0005-incidents.js';
import { auditKeyedChain } from './0006-audit-keyed-chain.js';
import { masterKeyCheck } from './0007-master-key-check.js';

/** Migrations are code, listed in order; one set serves every dialect. */
export const migrations: Record<string, Migration> = {
  '0001-keys-and-audit': keysAndAudit,
  '0002-secrets': secretsVault,
  '0003-rotation-policies': rotationPolicies,
  '0004-rotation-runs': rotationRuns,
  '0005-incidents': incidents,
  '0006-audit-keyed-chain': auditKeyedChain,
  '0007-master-key-check': masterKeyCheck,
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => migrations,
};
