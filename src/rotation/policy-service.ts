/**
 * Stored rotation policies: list, get, put (create or replace, optionally check-and-set on the
 * version) and delete. Each change and its audit event share one transaction; a put that changes
 * nothing writes nothing, so applying the same file twice leaves no trace. Audit events name the
 * fields that changed, never a setting's value. The conditional insert and update (no row locks)
 * make exactly one of two racing writers win; the other gets a version conflict.
 */
import type { Kysely, Transaction } from 'kysely';
import { type ActorContext, type AuditEventInput } from '../audit/index.js';
import type { AuditLog } from '../audit/index.js';
import type { Database, RotationPoliciesTable } from '../store/index.js';
import type { Clock } from '../shared/clock.js';
import { AppError } from '../shared/errors.js';
import { changedFields } from './plan.js';
import { policyNeedsByField, unmetNeeds } from './policy-grant.js';
import { createPolicyValidator, type ConnectorSettingsCheck, type PolicyLimits, type PolicyValidator, type RotationPolicy } from './policy.js';

export interface RotationPolicyServiceDeps {
  readonly db: Kysely<Database>;
  /** The audit log every change is written to, in the change's transaction. */
  readonly audit: AuditLog;
  readonly clock: Clock;
  readonly limits: PolicyLimits;
  /** Checks connector settings (the connector registry); without it only shapes and safety are checked. */
  readonly connectors?: ConnectorSettingsCheck;
}

export interface RotationPolicyRecord {
  readonly name: string;
  readonly version: number;
  readonly policy: RotationPolicy;
  readonly createdAt: string;
  readonly createdBy: string;
  readonly updatedAt: string;
  readonly updatedBy: string;
}

export interface PutPolicyResult {
  readonly record: RotationPolicyRecord;
  readonly created: boolean;
  /** Field paths that changed; empty for a put that changed nothing. */
  readonly changes: string[];
}

/**
 * Who puts a policy: the caller and the scopes its token holds. The policy acts as this author
 * later (the author is `updatedBy`, a token's key id), so it may need no scope the author lacks.
 */
export interface PolicyAuthor extends ActorContext {
  readonly scopes: readonly string[];
}

export interface DeletedPolicy {
  readonly name: string;
  readonly deleted: true;
  readonly version: number;
}

export class RotationPolicyService {
  readonly #deps: RotationPolicyServiceDeps;
  readonly #validator: PolicyValidator;

  constructor(deps: RotationPolicyServiceDeps) {
    this.#deps = deps;
    this.#validator = createPolicyValidator(deps.limits, deps.connectors);
  }

  get limits(): PolicyLimits {
    return this.#deps.limits;
  }

  async list(): Promise<RotationPolicyRecord[]> {
    const rows = await this.#deps.db.selectFrom('rotation_policies').selectAll().orderBy('name').execute();
    return rows.map(recordOf);
  }

  async get(name: string): Promise<RotationPolicyRecord> {
    const row = await this.#deps.db.selectFrom('rotation_policies').selectAll().where('name', '=', name).executeTakeFirst();
    if (!row) throw notFound(name);
    return recordOf(row);
  }

  /**
   * Creates or replaces the policy `name`; `version` 0 means it must not exist yet, n that n is
   * stored. Refused (403, with an auth.denied event) when the policy needs a scope its author
   * does not hold: a policy never holds more than its author.
   */
  async put(ctx: PolicyAuthor, name: string, input: unknown, version?: number): Promise<PutPolicyResult> {
    const checked = this.#validator.check(input);
    if (!checked.ok) {
      const details = checked.problems.slice(0, 20).map((problem) => ({ field: ['policy', ...problem.path].join('.'), message: problem.message }));
      throw new AppError('ERR_ROTATION_POLICY_INVALID', `policy ${name.slice(0, 64)}: ${checked.problems.map((problem) => problem.message).join('; ')}`, { details });
    }
    const policy = checked.policy;
    if (policy.name !== name) throw new AppError('ERR_ROTATION_POLICY_NAME_MISMATCH', `the policy is named "${policy.name}" but the URL names "${name.slice(0, 64)}"`);
    await this.#requireGrant(ctx, policy);
    return this.#transaction<PutPolicyResult>(ctx, async (trx, now) => {
      const row = await trx.selectFrom('rotation_policies').selectAll().where('name', '=', name).executeTakeFirst();
      if (version !== undefined && version !== (row?.version ?? 0)) throw versionConflict(name, version, row ? `it is at version ${row.version}` : 'it does not exist');
      if (!row) {
        const inserted = await trx
          .insertInto('rotation_policies')
          .values({ name, spec: JSON.stringify(policy), version: 1, created_at: now, created_by: ctx.actor, updated_at: now, updated_by: ctx.actor })
          .onConflict((oc) => oc.column('name').doNothing())
          .executeTakeFirst();
        if (Number(inserted.numInsertedOrUpdatedRows ?? 0) !== 1) throw versionConflict(name, 0, 'it was created meanwhile');
        const record = { name, version: 1, policy, createdAt: now, createdBy: ctx.actor, updatedAt: now, updatedBy: ctx.actor };
        return { result: { record, created: true, changes: [] }, audit: [auditEvent('rotation.policy.created', policy, 1)] };
      }
      const stored = recordOf(row);
      const changes = changedFields(stored.policy, policy);
      if (changes.length === 0) return { result: { record: stored, created: false, changes }, audit: [] };
      const next = row.version + 1;
      const updated = await trx
        .updateTable('rotation_policies')
        .set({ spec: JSON.stringify(policy), version: next, updated_at: now, updated_by: ctx.actor })
        .where('name', '=', name)
        .where('version', '=', row.version)
        .executeTakeFirst();
      if (Number(updated.numUpdatedRows) !== 1) throw versionConflict(name, row.version, 'it changed meanwhile');
      const record = { ...stored, version: next, policy, updatedAt: now, updatedBy: ctx.actor };
      return { result: { record, created: false, changes }, audit: [auditEvent('rotation.policy.updated', policy, next, changes)] };
    });
  }

  async delete(ctx: ActorContext, name: string, version?: number): Promise<DeletedPolicy> {
    return this.#transaction(ctx, async (trx) => {
      const row = await trx.selectFrom('rotation_policies').selectAll().where('name', '=', name).executeTakeFirst();
      if (!row) throw notFound(name);
      if (version !== undefined && version !== row.version) throw versionConflict(name, version, `it is at version ${row.version}`);
      const deleted = await trx.deleteFrom('rotation_policies').where('name', '=', name).where('version', '=', row.version).executeTakeFirst();
      if (Number(deleted.numDeletedRows) !== 1) throw versionConflict(name, row.version, 'it changed meanwhile');
      return { result: { name, deleted: true, version: row.version }, audit: [auditEvent('rotation.policy.deleted', recordOf(row).policy, row.version)] };
    });
  }

  async #requireGrant(author: PolicyAuthor, policy: RotationPolicy): Promise<void> {
    const unmet = unmetNeeds(author.scopes, policyNeedsByField(policy));
    if (unmet.length === 0) return;
    const scopes = unmet.map((need) => need.scope);
    const now = new Date(this.#deps.clock.now()).toISOString();
    await this.#deps.audit.record(
      this.#deps.db,
      author,
      { action: 'auth.denied', target: `rotation-policy:${policy.name}`, data: { requiredScope: scopes[0]!, requiredScopes: scopes, fields: unmet.map((need) => `policy.${need.field}`), action: 'rotation.policy.put' } },
      now,
    );
    const list = unmet.map((need) => `"${need.scope}" (policy.${need.field})`).join(', ');
    throw new AppError('ERR_FORBIDDEN', `a policy may not do more than its author: this token lacks ${list}`, {
      details: unmet.slice(0, 20).map((need) => ({ field: `policy.${need.field}`, message: `needs the scope ${need.scope}` })),
    });
  }

  async #transaction<T>(
    ctx: ActorContext,
    work: (trx: Transaction<Database>, now: string) => Promise<{ result: T; audit: readonly AuditEventInput[] }>,
  ): Promise<T> {
    const now = new Date(this.#deps.clock.now()).toISOString();
    return this.#deps.db.transaction().execute(async (trx) => {
      const done = await work(trx, now);
      for (const event of done.audit) await this.#deps.audit.append(trx, ctx, event, now);
      return done.result;
    });
  }
}

function recordOf(row: RotationPoliciesTable): RotationPolicyRecord {
  return {
    name: row.name,
    version: Number(row.version),
    policy: JSON.parse(row.spec) as RotationPolicy,
    createdAt: row.created_at,
    createdBy: row.created_by,
    updatedAt: row.updated_at,
    updatedBy: row.updated_by,
  };
}

/** What an audit event says about a policy: its shape, never a connector setting's value. */
function auditEvent(action: string, policy: RotationPolicy, version: number, changes?: string[]): AuditEventInput {
  const target = policy.target.key !== undefined ? 'key' : policy.target.keys !== undefined ? 'keys' : 'secret';
  return {
    action,
    target: `rotation-policy:${policy.name}`,
    data: { name: policy.name, version, target, connector: policy.connector.type, ...(changes ? { changes } : {}) },
  };
}

function notFound(name: string): AppError {
  return new AppError('ERR_ROTATION_POLICY_NOT_FOUND', `no rotation policy named "${name.slice(0, 64)}"`);
}

function versionConflict(name: string, given: number, actual: string): AppError {
  return new AppError('ERR_ROTATION_POLICY_VERSION_MISMATCH', `version ${given} is stale for rotation policy ${name.slice(0, 64)}: ${actual}`);
}
