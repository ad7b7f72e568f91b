/**
 * The rotation engine: starts runs (scheduled, manual, event-driven), advances them step by step
 * as a durable state machine, and pays the revocations they owe.
 *
 * Durability: a run is a row. Each step's result, the next step and what the run learnt are
 * written in one transaction with the step's timeline row and audit event, so a server killed
 * at any point resumes the run from its last persisted step (steps are safe to repeat). Waits
 * (the traffic gate, a retry's backoff) are a `next_at` time in the row, not a timer in memory.
 *
 * Several servers: a server advances a run only while it holds the run's lease (a conditional
 * update of `lease_owner`/`lease_until`, renewed while a step runs). One running run per target
 * is a unique index on `active_target`; a scheduled firing of a policy starts once because
 * (policy, target, scheduled_for) is unique; the scheduler itself runs on one server at a time
 * under a lease in the `leases` table.
 */
import type { Kysely, Transaction } from 'kysely';
import { type ActorContext, type AuditEventInput } from '../../audit/index.js';
import type { AuditLog } from '../../audit/index.js';
import type { KeyRecord, KeyService } from '../../keys/index.js';
import type { SecretService } from '../../secrets/index.js';
import { isUniqueViolation, type Database, type StoreDialect, type RotationRunsTable } from '../../store/index.js';
import type { Clock } from '../../shared/clock.js';
import { AppError, isAppError } from '../../shared/errors.js';
import { newKeyIdBody, type RandomBytes } from '../../shared/ids.js';
import { decodeCursor, encodeCursor } from '../../shared/cursor.js';
import { parseDuration, tryParseDuration } from '../../shared/duration.js';
import { isConnectorError, type Connector, type StepEvidence } from '../connectors/connector.js';
import { bounded, safeSummary, scrubText, summariseFailure } from '../failure.js';
import type { ConnectorRegistry } from '../connectors/registry.js';
import { latestFiring, parseCron } from '../cron.js';
import { normalisePolicy, type RotationPolicy } from '../policy.js';
import type { RotationPolicyService } from '../policy-service.js';
import { targetNeeds, unmetNeeds } from '../policy-grant.js';
import { authorDenial } from './author-check.js';
import type { Outbound } from '../../outbound/index.js';
import type { CheckTiming } from './checks.js';
import {
  BEFORE_PROMOTE,
  parseState,
  specOf,
  toRevocationRecord,
  toRunRecord,
  toStepRecord,
  type RevocationCredential,
  type RunDetail,
  type RunRecord,
  type RunState,
  type RunStatus,
  type RunStep,
  type RunTrigger,
  type TargetKind,
} from './run-model.js';
import { RunSteps, type StepInput, type StepOutcome } from './steps.js';

export interface RotationEngineConfig {
  /** How often a server looks for due runs, revocations and schedules. */
  readonly tickMs: number;
  /** How long a claim on a run lasts without renewal (a crashed server's runs resume after it). */
  readonly leaseMs: number;
  /** Tries of one step before the run turns back (undo steps and revocations never give up). */
  readonly maxAttempts: number;
  readonly retryBaseMs: number;
  readonly maxBackoffMs: number;
  readonly trafficCheckMs: number;
  readonly defaultQuietPeriodMs: number;
  readonly checks: CheckTiming;
  /** Start scheduled runs (servers may leave it to others). */
  readonly scheduler: boolean;
  /** How often the scheduler looks for due targets (it reads every policy's targets). */
  readonly scheduleEveryMs: number;
  /** Runs one server advances at once. */
  readonly concurrency: number;
  /** The overlap of a manual key rotation no policy covers. */
  readonly defaultOverlap: string;
}

export const DEFAULT_ENGINE_CONFIG: RotationEngineConfig = {
  tickMs: 1000,
  leaseMs: 30_000,
  maxAttempts: 5,
  retryBaseMs: 2000,
  maxBackoffMs: 15 * 60_000,
  trafficCheckMs: 60_000,
  defaultQuietPeriodMs: 15 * 60_000,
  checks: { intervalMs: 5000, timeoutMs: 10_000 },
  scheduler: true,
  scheduleEveryMs: 60_000,
  concurrency: 4,
  defaultOverlap: '24h',
};

export interface RotationEngineDeps {
  readonly db: Kysely<Database>;
  /** The audit log every change is written to, in the change's transaction. */
  readonly audit: AuditLog;
  readonly dialect: StoreDialect;
  readonly clock: Clock;
  readonly random: RandomBytes;
  readonly keys: KeyService;
  readonly secrets: SecretService;
  readonly policies: RotationPolicyService;
  readonly connectors: ConnectorRegistry;
  readonly randomFor: (runId: string) => RandomBytes;
  readonly config?: Partial<RotationEngineConfig>;
  /** The operator's egress allowlist and program registry (health checks, deploy hooks). */
  readonly outbound: Outbound;
}

export interface TriggerInput {
  readonly policy?: string | undefined;
  readonly key?: string | undefined;
  readonly secret?: string | undefined;
  readonly reason?: string | undefined;
  readonly trigger: RunTrigger;
  /** Only for a key no policy covers. */
  readonly overlap?: string | undefined;
  readonly scheduledFor?: string | undefined;
  /**
   * The scopes of the caller who starts the run (an API call): it must be able to change the
   * target itself (secrets:write on a secret, keys:rotate on a key). The scheduler gives none:
   * a scheduled run is checked against the policy's author when it starts.
   */
  readonly grant?: readonly string[] | undefined;
}

export interface ListRunsFilter {
  readonly status?: RunStatus | undefined;
  readonly policy?: string | undefined;
  readonly target?: string | undefined;
  readonly cursor?: string | undefined;
  readonly limit?: number | undefined;
}

export interface RotationStats {
  readonly runs: Record<RunStatus, number>;
  /** Finished runs that ended done, of all finished runs; null before any finished. */
  readonly successRate: number | null;
  /** Median seconds from start to the new credential being current, by how runs started. */
  readonly medianSecondsToRotate: { readonly scheduled: number | null; readonly incident: number | null; readonly manual: number | null };
  readonly rolledBack: number;
  readonly awaitingRevocation: number;
}

const SCHEDULER_LEASE = 'rotation-scheduler';
const ENGINE: ActorContext = { actor: 'rotation' };

export class RotationEngine {
  readonly #deps: RotationEngineDeps;
  readonly #config: RotationEngineConfig;
  readonly #steps: RunSteps;
  /** This server's name on leases. */
  readonly owner: string;
  readonly #inFlight = new Map<string, Promise<void>>();
  #abort = new AbortController();
  #stopTimer: (() => void) | undefined;
  #ticking: Promise<void> | undefined;
  #wakeTimer: NodeJS.Timeout | undefined;
  /** When this server last looked for due targets (real time, so a test clock does not stall it). */
  #lastScheduled = 0;

  constructor(deps: RotationEngineDeps) {
    this.#deps = deps;
    this.#config = { ...DEFAULT_ENGINE_CONFIG, ...deps.config };
    this.owner = `srv_${newKeyIdBody(deps.random)}`;
    this.#steps = new RunSteps({
      keys: deps.keys,
      secrets: deps.secrets,
      connector: (type) => this.#connector(type),
      now: () => deps.clock.now(),
      checks: this.#config.checks,
      outbound: deps.outbound,
      trafficCheckMs: this.#config.trafficCheckMs,
      defaultQuietPeriodMs: this.#config.defaultQuietPeriodMs,
      randomFor: deps.randomFor,
    });
  }

  get config(): RotationEngineConfig {
    return this.#config;
  }

  // ---- lifecycle ----------------------------------------------------------------------------

  start(): void {
    if (this.#stopTimer) return;
    this.#abort = new AbortController();
    const timer = setInterval(() => this.#tickInBackground(), this.#config.tickMs);
    timer.unref();
    this.#stopTimer = () => clearInterval(timer);
    this.#tickInBackground();
  }

  /** Stops ticking, cancels steps in flight and gives their runs back, so a restart resumes them at once. */
  async stop(): Promise<void> {
    this.#stopTimer?.();
    this.#stopTimer = undefined;
    if (this.#wakeTimer) clearTimeout(this.#wakeTimer);
    this.#abort.abort(new Error('the server is stopping'));
    await this.#ticking?.catch(() => undefined);
    await Promise.allSettled([...this.#inFlight.values()]);
    const released = { lease_owner: null, lease_until: null };
    await this.#deps.db.updateTable('rotation_runs').set(released).where('lease_owner', '=', this.owner).execute().catch(() => undefined);
    await this.#deps.db.updateTable('rotation_revocations').set(released).where('lease_owner', '=', this.owner).execute().catch(() => undefined);
    await this.#deps.db.deleteFrom('leases').where('owner', '=', this.owner).execute().catch(() => undefined);
  }

  #tickInBackground(): void {
    if (this.#ticking || this.#abort.signal.aborted) return;
    this.#ticking = this.tick()
      .catch(() => undefined)
      .finally(() => {
        this.#ticking = undefined;
      });
  }

  /** Soon after a trigger, rather than at the next tick. */
  #wake(): void {
    if (!this.#stopTimer || this.#wakeTimer) return;
    this.#wakeTimer = setTimeout(() => {
      this.#wakeTimer = undefined;
      this.#tickInBackground();
    }, 10);
    this.#wakeTimer.unref();
  }

  /** One pass: start scheduled runs, advance due runs, pay due revocations. Resolves when the work it started is done. */
  async tick(): Promise<void> {
    if (this.#config.scheduler && Date.now() - this.#lastScheduled >= this.#config.scheduleEveryMs) {
      this.#lastScheduled = Date.now();
      await this.scheduleDue();
    }
    const claimed = await this.#claimRuns();
    const revocations = await this.#claimRevocations();
    await Promise.allSettled([...claimed.map((row) => this.#track(row.id, this.#advance(row))), ...revocations.map((id) => this.#payRevocation(id))]);
  }

  #track(id: string, work: Promise<void>): Promise<void> {
    const tracked = work.finally(() => this.#inFlight.delete(id));
    this.#inFlight.set(id, tracked);
    return tracked;
  }

  // ---- triggers -----------------------------------------------------------------------------

  /** Starts a run. A second trigger while one runs for the target is refused, naming the running one. */
  async trigger(ctx: ActorContext, input: TriggerInput): Promise<RunRecord | undefined> {
    const resolved = await this.#resolve(input);
    if (input.grant !== undefined) await this.#requireTargetGrant(ctx, input.grant, resolved);
    const now = this.#nowIso();
    const id = `rot_${newKeyIdBody(this.#deps.random)}`;
    const state: RunState = { ...(resolved.kind === 'key' ? { oldVendorId: resolved.target } : {}), ...(resolved.author !== undefined ? { author: resolved.author } : {}) };
    const row: RotationRunsTable = {
      id,
      policy: resolved.policyName,
      policy_version: resolved.policyVersion,
      spec: JSON.stringify(resolved.policy),
      target_kind: resolved.kind,
      target: resolved.target,
      trigger: input.trigger,
      reason: input.reason ?? null,
      scheduled_for: input.scheduledFor ?? null,
      status: 'running',
      step: 'create',
      state: JSON.stringify(state),
      attempts: 0,
      next_at: now,
      lease_owner: null,
      lease_until: null,
      active_target: `${resolved.kind}:${resolved.target}`,
      error: null,
      created_at: now,
      created_by: ctx.actor,
      updated_at: now,
      promoted_at: null,
      finished_at: null,
    };
    const inserted = await this.#deps.db.transaction().execute(async (trx) => {
      const result = await trx.insertInto('rotation_runs').values(row).onConflict((oc) => oc.doNothing()).executeTakeFirst();
      if (Number(result.numInsertedOrUpdatedRows ?? 0) !== 1) return false;
      await this.#deps.audit.append(trx, ctx, {
        action: 'rotation.run.started',
        target: id,
        data: { policy: resolved.policyName, target: resolved.target, kind: resolved.kind, trigger: input.trigger, ...(input.reason ? { reason: input.reason } : {}), connector: resolved.policy.connector.type },
      }, now);
      return true;
    });
    if (!inserted) {
      await this.#assertNotActive(resolved.kind, resolved.target);
      if (input.scheduledFor !== undefined) return undefined; // this firing has already started, on this server or another
      throw new AppError('ERR_ROTATION_IN_PROGRESS', `a run of ${resolved.target} started at the same moment`);
    }
    this.#wake();
    return toRunRecord(row);
  }

  /** A caller may start a rotation only of a target it could change itself. */
  async #requireTargetGrant(ctx: ActorContext, grant: readonly string[], resolved: { kind: TargetKind; target: string }): Promise<void> {
    const needs = resolved.kind === 'secret' ? targetNeeds({ target: { secret: resolved.target } }) : targetNeeds({ target: { key: resolved.target } });
    const unmet = unmetNeeds(grant, needs);
    if (unmet.length === 0) return;
    const scope = unmet[0]!.scope;
    await this.#deps.audit.record(this.#deps.db, ctx, { action: 'auth.denied', target: `${resolved.kind}:${resolved.target}`, data: { requiredScope: scope, action: 'rotation.run.start' } }, this.#nowIso());
    throw new AppError('ERR_FORBIDDEN', `this token lacks the scope "${scope}": starting a rotation changes ${resolved.kind} ${resolved.target}`);
  }

  async #resolve(input: TriggerInput): Promise<{ kind: TargetKind; target: string; policy: RotationPolicy; policyName: string | null; policyVersion: number | null; author?: string }> {
    const named = [input.key, input.secret].filter((value) => value !== undefined);
    if (named.length > 1) throw new AppError('ERR_INVALID_REQUEST', 'name a key or a secret, not both', { details: [{ field: 'key', message: 'one of key or secret' }] });
    if (input.policy !== undefined) {
      const record = await this.#deps.policies.get(input.policy);
      const policy = record.policy;
      refuseOverlap(input, policy.name);
      let kind: TargetKind;
      let target: string;
      if (policy.target.secret !== undefined) {
        kind = 'secret';
        target = policy.target.secret;
        if (input.key !== undefined || (input.secret !== undefined && input.secret !== target)) throw this.#mismatch(policy.name, `rotates the secret ${target}`);
      } else if (policy.target.key !== undefined) {
        kind = 'key';
        target = policy.target.key;
        if (input.secret !== undefined || (input.key !== undefined && input.key !== target)) throw this.#mismatch(policy.name, `rotates the key ${target}`);
      } else {
        kind = 'key';
        if (input.key === undefined) throw new AppError('ERR_INVALID_REQUEST', `policy ${policy.name} chooses keys by owner or label; name the key to rotate`, { details: [{ field: 'key', message: 'required with this policy' }] });
        target = input.key;
        const key = await this.#deps.keys.get(target);
        if (!selects(policy, key)) throw this.#mismatch(policy.name, 'does not choose this key');
        await this.#assertRotatableKey(key);
        return { kind, target, policy, policyName: record.name, policyVersion: record.version, author: record.updatedBy };
      }
      if (kind === 'key') await this.#assertRotatableKey(await this.#deps.keys.get(target));
      return { kind, target, policy, policyName: record.name, policyVersion: record.version, author: record.updatedBy };
    }
    if (input.key !== undefined) {
      const record = await this.#deps.keys.get(input.key);
      await this.#assertRotatableKey(record);
      const covering = (await this.#deps.policies.list()).find((stored) => stored.policy.enabled && (stored.policy.target.key === input.key || selects(stored.policy, record)));
      if (covering) {
        refuseOverlap(input, covering.name);
        return { kind: 'key', target: input.key, policy: covering.policy, policyName: covering.name, policyVersion: covering.version, author: covering.updatedBy };
      }
      const overlap = input.overlap ?? this.#config.defaultOverlap;
      parseDuration(overlap, 'overlap');
      const policy = normalisePolicy({
        name: 'manual',
        target: { key: input.key },
        schedule: { every: '90d' },
        overlap,
        connector: { type: 'keysmith-key', settings: {} },
        onOverlapEnd: 'revoke',
      });
      return { kind: 'key', target: input.key, policy, policyName: null, policyVersion: null };
    }
    if (input.secret !== undefined) {
      const covering = (await this.#deps.policies.list()).find((stored) => stored.policy.enabled && stored.policy.target.secret === input.secret);
      if (!covering) throw new AppError('ERR_ROTATION_NO_POLICY', `no enabled rotation policy rotates the secret ${input.secret.slice(0, 256)}; apply one that names it as its target`);
      refuseOverlap(input, covering.name);
      return { kind: 'secret', target: input.secret, policy: covering.policy, policyName: covering.name, policyVersion: covering.version, author: covering.updatedBy };
    }
    throw new AppError('ERR_INVALID_REQUEST', 'name what to rotate: policy, key or secret', { details: [{ field: 'policy', message: 'one of policy, key or secret is required' }] });
  }

  async #assertNotActive(kind: TargetKind, target: string): Promise<void> {
    const active = await this.#deps.db.selectFrom('rotation_runs').select('id').where('active_target', '=', `${kind}:${target}`).executeTakeFirst();
    if (active) throw new AppError('ERR_ROTATION_IN_PROGRESS', `run ${active.id} is already rotating ${kind} ${target}`, { details: [{ field: 'run', message: active.id }] });
  }

  #mismatch(policy: string, what: string): AppError {
    return new AppError('ERR_INVALID_REQUEST', `policy ${policy} ${what}`, { details: [{ field: 'policy', message: what }] });
  }

  async #assertRotatableKey(record: KeyRecord): Promise<void> {
    // A key being rotated is superseded already: say which run has it, not that it cannot be rotated.
    await this.#assertNotActive('key', record.id);
    if (record.status !== 'active') throw new AppError('ERR_ROTATION_TARGET_INVALID', `key ${record.id} is ${record.status}; only an active key can be rotated`);
  }

  // ---- reading ------------------------------------------------------------------------------

  async get(id: string): Promise<RunDetail> {
    const row = await this.#deps.db.selectFrom('rotation_runs').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new AppError('ERR_ROTATION_RUN_NOT_FOUND', `no rotation run ${id.slice(0, 40)}`);
    const [steps, revocations] = await Promise.all([
      this.#deps.db.selectFrom('rotation_run_steps').selectAll().where('run_id', '=', id).orderBy('seq').execute(),
      this.#deps.db.selectFrom('rotation_revocations').selectAll().where('run_id', '=', id).orderBy('created_at').execute(),
    ]);
    return { ...toRunRecord(row), timeline: steps.map(toStepRecord), revocations: revocations.map(toRevocationRecord) };
  }

  async list(filter: ListRunsFilter = {}): Promise<{ data: RunRecord[]; nextCursor: string | null }> {
    const limit = Math.min(Math.max(filter.limit ?? 50, 1), 500);
    let query = this.#deps.db.selectFrom('rotation_runs').selectAll();
    if (filter.status !== undefined) query = query.where('status', '=', filter.status);
    if (filter.policy !== undefined) query = query.where('policy', '=', filter.policy);
    if (filter.target !== undefined) query = query.where('target', '=', filter.target);
    if (filter.cursor !== undefined) {
      const [createdAt, id] = decodeCursor(filter.cursor);
      query = query.where((eb) => eb.or([eb('created_at', '<', createdAt), eb.and([eb('created_at', '=', createdAt), eb('id', '<', id)])]));
    }
    const rows = await query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit + 1).execute();
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return { data: page.map(toRunRecord), nextCursor: rows.length > limit && last ? encodeCursor(last.created_at, last.id) : null };
  }

  async stats(): Promise<RotationStats> {
    const db = this.#deps.db;
    const counts = await db.selectFrom('rotation_runs').select(['status']).select((eb) => eb.fn.countAll<string>().as('n')).groupBy('status').execute();
    const runs: Record<RunStatus, number> = { running: 0, done: 0, failed: 0, rolled_back: 0 };
    for (const row of counts) if (row.status in runs) runs[row.status as RunStatus] = Number(row.n);
    const finished = runs.done + runs.failed + runs.rolled_back;
    const timed = await db.selectFrom('rotation_runs').select(['trigger', 'created_at', 'promoted_at']).where('promoted_at', 'is not', null).orderBy('created_at', 'desc').limit(10_000).execute();
    const took = (triggers: readonly string[]) =>
      timed.filter((row) => triggers.includes(row.trigger)).map((row) => (Date.parse(row.promoted_at!) - Date.parse(row.created_at)) / 1000);
    const seconds = (triggers: readonly string[]) => median(took(triggers));
    // Break-glass rotations (`incident rotate`) make every new key current at once, when the incident closes.
    const incidents = await db
      .selectFrom('incidents')
      .select(['started_at', 'finished_at'])
      .where('action', '=', 'rotate')
      .where('status', '=', 'done')
      .where('finished_at', 'is not', null)
      .orderBy('started_at', 'desc')
      .limit(10_000)
      .execute();
    const incidentSeconds = incidents.map((row) => (Date.parse(row.finished_at!) - Date.parse(row.started_at)) / 1000);
    const waiting = await db.selectFrom('rotation_revocations').select((eb) => eb.fn.countAll<string>().as('n')).where('status', '=', 'waiting').where('which', '=', 'old').executeTakeFirst();
    return {
      runs,
      successRate: finished === 0 ? null : runs.done / finished,
      medianSecondsToRotate: { scheduled: seconds(['schedule']), incident: median([...took(['event', 'incident']), ...incidentSeconds]), manual: seconds(['manual']) },
      rolledBack: runs.rolled_back,
      awaitingRevocation: Number(waiting?.n ?? 0),
    };
  }

  // ---- rollback of a finished run -----------------------------------------------------------

  /**
   * Undoes a run that ended done, while its overlap lasts: the old credential's revocation is
   * cancelled (refused when it is under way or done), the old credential is current again and
   * the new one is retired. `grant`, the caller's scopes when it is an API call, must cover
   * changing the target.
   */
  async rollback(ctx: ActorContext, id: string, grant?: readonly string[]): Promise<RunDetail> {
    const row = await this.#deps.db.selectFrom('rotation_runs').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new AppError('ERR_ROTATION_RUN_NOT_FOUND', `no rotation run ${id.slice(0, 40)}`);
    // Rolling back changes the target as much as rotating it: the caller must be able to change it.
    if (grant !== undefined) await this.#requireTargetGrant(ctx, grant, { kind: row.target_kind, target: row.target });
    if (row.status !== 'done') throw new AppError('ERR_ROTATION_ROLLBACK_CLOSED', `run ${id} is ${row.status}; only a run that ended done can be rolled back`);
    const state = parseState(row.state);
    const now = this.#deps.clock.now();
    if (state.overlapEndsAt !== undefined && Date.parse(state.overlapEndsAt) <= now && state.kept !== true) {
      throw new AppError('ERR_ROTATION_ROLLBACK_CLOSED', `the overlap of run ${id} ended at ${state.overlapEndsAt}`);
    }
    if (row.target_kind === 'secret' && state.newVersion !== undefined) {
      const { stages } = await this.#deps.secrets.metadata(row.target);
      if (stages.current !== state.newVersion) {
        throw new AppError('ERR_ROTATION_ROLLBACK_CLOSED', `${row.target} has changed since run ${id}: its current version is ${stages.current ?? 'none'}, not ${state.newVersion}`);
      }
    }
    const nowIso = new Date(now).toISOString();
    const claimed = await this.#deps.db.transaction().execute(async (trx) => {
      const cancelled = await trx
        .updateTable('rotation_revocations')
        .set({ status: 'cancelled', done_at: nowIso })
        .where('run_id', '=', id)
        .where('which', '=', 'old')
        .where('status', '=', 'waiting')
        .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', nowIso)]))
        .executeTakeFirst();
      const hadRevocation = await trx.selectFrom('rotation_revocations').select('status').where('run_id', '=', id).where('which', '=', 'old').executeTakeFirst();
      if (hadRevocation !== undefined && Number(cancelled.numUpdatedRows) !== 1) return undefined;
      // Back to running, at the rollback step, under this server's lease: the engine's own undo does the rest.
      const running = await trx
        .updateTable('rotation_runs')
        .set({ status: 'running', step: 'rollback', attempts: 0, next_at: nowIso, lease_owner: this.owner, lease_until: this.#leaseUntil(), active_target: `${row.target_kind}:${row.target}`, updated_at: nowIso, finished_at: null })
        .where('id', '=', id)
        .where('status', '=', 'done')
        .returningAll()
        .executeTakeFirst();
      if (running === undefined) return undefined;
      await this.#deps.audit.append(trx, ctx, { action: 'rotation.run.rollback_requested', target: id, data: { target: row.target, kind: row.target_kind } }, nowIso);
      return running;
    }).catch((error: unknown) => {
      if (isUniqueViolation(error)) throw new AppError('ERR_ROTATION_IN_PROGRESS', `another run is rotating ${row.target_kind} ${row.target}; wait for it to end`);
      throw error;
    });
    if (!claimed) throw new AppError('ERR_ROTATION_ROLLBACK_CLOSED', `the old credential of run ${id} is already being revoked or is revoked`);
    await this.#track(id, this.#advance(claimed));
    return this.get(id);
  }

  // ---- advancing runs -----------------------------------------------------------------------

  #leaseUntil(): string {
    return new Date(this.#deps.clock.now() + this.#config.leaseMs).toISOString();
  }

  #nowIso(): string {
    return new Date(this.#deps.clock.now()).toISOString();
  }

  async #claimRuns(): Promise<RotationRunsTable[]> {
    const room = this.#config.concurrency - this.#inFlight.size;
    if (room <= 0) return [];
    const now = this.#nowIso();
    const due = await this.#deps.db
      .selectFrom('rotation_runs')
      .select('id')
      .where('status', '=', 'running')
      .where('next_at', '<=', now)
      .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
      .orderBy('next_at')
      .limit(room)
      .execute();
    const claimed: RotationRunsTable[] = [];
    for (const { id } of due) {
      if (this.#inFlight.has(id)) continue;
      const row = await this.#deps.db
        .updateTable('rotation_runs')
        .set({ lease_owner: this.owner, lease_until: this.#leaseUntil() })
        .where('id', '=', id)
        .where('status', '=', 'running')
        .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
        .returningAll()
        .executeTakeFirst();
      if (row) claimed.push(row);
    }
    return claimed;
  }

  #connector(type: string): Connector {
    const connector = this.#deps.connectors.get(type);
    if (!connector) throw new AppError('ERR_CONNECTOR_SETTINGS_INVALID', `no connector of type ${type.slice(0, 40)}`);
    return connector;
  }

  #input(row: RotationRunsTable, signal: AbortSignal): StepInput {
    return { runId: row.id, kind: row.target_kind, target: row.target, policy: specOf(row), state: parseState(row.state), signal };
  }

  /** Advances a claimed run until it ends, waits, or loses its lease. */
  async #advance(claimed: RotationRunsTable): Promise<void> {
    const signal = this.#abort.signal;
    const renew = setInterval(() => {
      this.#deps.db
        .updateTable('rotation_runs')
        .set({ lease_until: this.#leaseUntil() })
        .where('id', '=', claimed.id)
        .where('lease_owner', '=', this.owner)
        .execute()
        .catch(() => undefined);
    }, Math.max(50, Math.floor(this.#config.leaseMs / 3)));
    renew.unref();
    let row: RotationRunsTable | undefined = claimed;
    try {
      for (let guard = 0; row !== undefined && row.status === 'running' && guard < 32; guard += 1) {
        const step = row.step as RunStep;
        const startedAt = this.#nowIso();
        let outcome: StepOutcome;
        try {
          const refused = step === 'create' ? await this.#authorRefusal(row) : undefined;
          if (refused !== undefined) {
            await this.#refuseStart(row, startedAt, refused);
            return;
          }
          outcome = await this.#steps.run(step, this.#input(row, signal));
        } catch (error) {
          if (signal.aborted) return;
          const message = summariseFailure(error, this.#steps.valuesSeen(row.id), step);
          const undoing = step === 'discard' || step === 'rollback';
          const retryable = isConnectorError(error) ? error.retryable : !isAppError(error);
          if (undoing || (retryable && Number(row.attempts) + 1 < this.#config.maxAttempts)) {
            await this.#retryLater(row, step, startedAt, message);
            return;
          }
          outcome = { kind: 'fail', message, evidence: {} };
        }
        if (signal.aborted) return;
        row = await this.#persist(row, step, startedAt, outcome);
        if (outcome.kind === 'wait') return;
      }
    } finally {
      clearInterval(renew);
      this.#steps.forget(claimed.id);
    }
  }

  /** Why the run may not start as its policy's author, before any connector call; undefined when it may. */
  async #authorRefusal(row: RotationRunsTable): Promise<string | undefined> {
    if (row.policy === null) return undefined; // no stored policy: the caller who started it was checked then
    const author = parseState(row.state).author ?? (await this.#deps.policies.get(row.policy).catch(() => undefined))?.updatedBy;
    if (author === undefined) return `the policy ${row.policy} has no author to run as`;
    return authorDenial(this.#deps.keys, author, specOf(row));
  }

  /** Ends a run that may not start: nothing was made, so nothing is undone. */
  async #refuseStart(row: RotationRunsTable, startedAt: string, message: string): Promise<void> {
    await this.#write(row, async (trx, now) => {
      await this.#timeline(trx, row.id, 'create', 'refused', startedAt, now, {}, message);
      await this.#end(trx, row, 'failed', { error: message, updated_at: now }, now);
      return [
        { action: 'rotation.run.alert', target: row.id, data: { step: 'create', policy: row.policy, message } },
        { action: 'rotation.run.failed', target: row.id, data: { step: 'create', reason: 'author' } },
      ];
    });
  }

  async #retryLater(row: RotationRunsTable, step: RunStep, startedAt: string, message: string): Promise<void> {
    const attempts = Number(row.attempts) + 1;
    const nextAt = new Date(this.#deps.clock.now() + backoff(attempts, this.#config)).toISOString();
    await this.#write(row, async (trx, now) => {
      await this.#timeline(trx, row.id, step, 'retry', startedAt, now, { attempt: attempts, nextAt }, message);
      await trx.updateTable('rotation_runs').set({ attempts, next_at: nextAt, error: message, lease_owner: null, lease_until: null, updated_at: now }).where('id', '=', row.id).execute();
      return [{ action: 'rotation.run.step', target: row.id, data: { step, outcome: 'retry', attempt: attempts, nextAt } }];
    });
  }

  /** Writes a step's outcome, its timeline row and audit events in one transaction; returns the run as it now is. */
  async #persist(row: RotationRunsTable, step: RunStep, startedAt: string, given: StepOutcome): Promise<RotationRunsTable | undefined> {
    const outcome = this.#scrubbed(row.id, given);
    const state: RunState = { ...parseState(row.state), ...('state' in outcome ? outcome.state : {}) };
    if (outcome.kind !== 'wait') delete state.waitingIn;
    const policy = specOf(row);
    return this.#write(row, async (trx, now, nowMs) => {
      const base = { state: JSON.stringify(state), updated_at: now };
      const audit: AuditEventInput[] = [];
      switch (outcome.kind) {
        case 'next': {
          await this.#timeline(trx, row.id, step, 'ok', startedAt, now, outcome.evidence, null);
          await trx
            .updateTable('rotation_runs')
            .set({ ...base, step: outcome.step, attempts: 0, next_at: now, error: null, ...(outcome.promotedAt ? { promoted_at: outcome.promotedAt } : {}) })
            .where('id', '=', row.id)
            .execute();
          audit.push({ action: 'rotation.run.step', target: row.id, data: { step, outcome: 'ok', next: outcome.step, ...pickIds(outcome.evidence) } });
          break;
        }
        case 'wait': {
          const firstWait = parseState(row.state).waitingIn !== step || outcome.note === true;
          if (firstWait) {
            await this.#timeline(trx, row.id, step, 'waiting', startedAt, now, outcome.evidence ?? {}, null);
            audit.push({ action: 'rotation.run.step', target: row.id, data: { step, outcome: 'waiting', until: new Date(outcome.untilMs).toISOString() } });
          }
          await trx
            .updateTable('rotation_runs')
            .set({ ...base, state: JSON.stringify({ ...state, waitingIn: step }), next_at: new Date(outcome.untilMs).toISOString(), lease_owner: null, lease_until: null })
            .where('id', '=', row.id)
            .execute();
          break;
        }
        case 'fail': {
          await this.#timeline(trx, row.id, step, 'failed', startedAt, now, outcome.evidence, outcome.message);
          const turnBack: RunStep | undefined = BEFORE_PROMOTE.has(step) ? 'discard' : step === 'discard' || step === 'rollback' ? undefined : policy.onFailure === 'rollback' ? 'rollback' : undefined;
          if (turnBack !== undefined) {
            await trx
              .updateTable('rotation_runs')
              .set({ ...base, state: JSON.stringify({ ...state, failedStep: step }), step: turnBack, attempts: 0, next_at: now, error: outcome.message })
              .where('id', '=', row.id)
              .execute();
            audit.push({ action: 'rotation.run.step', target: row.id, data: { step, outcome: 'failed', next: turnBack } });
          } else {
            await this.#end(trx, row, 'failed', { ...base, error: outcome.message }, now);
            audit.push({ action: 'rotation.run.alert', target: row.id, data: { step, message: `the run failed at ${step} and was left as it is (onFailure: alert)` } });
            audit.push({ action: 'rotation.run.failed', target: row.id, data: { step } });
          }
          break;
        }
        case 'end': {
          await this.#timeline(trx, row.id, step, 'ok', startedAt, now, outcome.evidence, null);
          if (outcome.revoke) {
            const notBefore = new Date(Math.max(outcome.revoke.notBeforeMs, nowMs)).toISOString();
            await trx
              .insertInto('rotation_revocations')
              .values({
                id: `rvk_${newKeyIdBody(this.#deps.random)}`,
                run_id: row.id,
                which: outcome.revoke.which,
                credential: JSON.stringify(outcome.revoke.credential),
                status: 'waiting',
                not_before: notBefore,
                next_at: notBefore,
                attempts: 0,
                last_error: null,
                lease_owner: null,
                lease_until: null,
                created_at: now,
                done_at: null,
              })
              .execute();
          }
          const error = outcome.status === 'done' ? null : row.error;
          await this.#end(trx, row, outcome.status, { ...base, error }, now);
          if (outcome.alert) audit.push({ action: 'rotation.run.alert', target: row.id, data: { message: outcome.alert } });
          audit.push({ action: `rotation.run.${outcome.status}`, target: row.id, data: { step, ...(outcome.revoke ? { revokes: outcome.revoke.which, revokeAt: new Date(outcome.revoke.notBeforeMs).toISOString() } : {}) } });
          break;
        }
      }
      return audit;
    });
  }

  /** A step's outcome with its failure message and alert made safe to record (bounded, scrubbed). */
  #scrubbed(runId: string, outcome: StepOutcome): StepOutcome {
    const seen = this.#steps.valuesSeen(runId);
    if (outcome.kind === 'fail') return { ...outcome, message: safeSummary(outcome.message, seen) };
    if (outcome.kind === 'end' && outcome.alert !== undefined) return { ...outcome, alert: safeSummary(outcome.alert, seen) };
    return outcome;
  }

  async #end(trx: Transaction<Database>, row: RotationRunsTable, status: RunStatus, values: Partial<RotationRunsTable>, now: string): Promise<void> {
    await trx
      .updateTable('rotation_runs')
      .set({ ...values, status, active_target: null, finished_at: now, next_at: now, lease_owner: null, lease_until: null })
      .where('id', '=', row.id)
      .execute();
  }

  async #timeline(trx: Transaction<Database>, runId: string, step: RunStep, outcome: string, startedAt: string, finishedAt: string, evidence: StepEvidence, error: string | null): Promise<void> {
    const last = await trx.selectFrom('rotation_run_steps').select((eb) => eb.fn.max('seq').as('seq')).where('run_id', '=', runId).executeTakeFirst();
    const seq = Number(last?.seq ?? 0) + 1;
    // The last gate before the record: evidence and errors come from programs and vendors.
    const seen = this.#steps.valuesSeen(runId);
    const safe: Record<string, string | number | boolean | null> = {};
    for (const [field, value] of Object.entries(evidence)) safe[field] = typeof value === 'string' ? bounded(scrubText(value, seen)) : value;
    const safeError = error === null ? null : safeSummary(error, seen);
    await trx.insertInto('rotation_run_steps').values({ run_id: runId, seq, step, outcome, started_at: startedAt, finished_at: finishedAt, evidence: JSON.stringify(safe), error: safeError }).execute();
  }

  /**
   * One transaction that holds only while this server still owns the run's lease; returns the
   * run as written, or undefined when the lease was lost (another server has the run now).
   */
  async #write(row: RotationRunsTable, work: (trx: Transaction<Database>, now: string, nowMs: number) => Promise<AuditEventInput[]>): Promise<RotationRunsTable | undefined> {
    const nowMs = this.#deps.clock.now();
    const now = new Date(nowMs).toISOString();
    return this.#deps.db.transaction().execute(async (trx) => {
      const held = await trx
        .updateTable('rotation_runs')
        .set({ updated_at: now })
        .where('id', '=', row.id)
        .where('status', '=', 'running')
        .where('lease_owner', '=', this.owner)
        .executeTakeFirst();
      if (Number(held.numUpdatedRows) !== 1) return undefined;
      const audit = await work(trx, now, nowMs);
      for (const event of audit) await this.#deps.audit.append(trx, { actor: 'rotation', requestId: row.id }, event, now);
      return trx.selectFrom('rotation_runs').selectAll().where('id', '=', row.id).executeTakeFirst();
    });
  }

  // ---- revocations --------------------------------------------------------------------------

  async #claimRevocations(): Promise<string[]> {
    const now = this.#nowIso();
    const due = await this.#deps.db
      .selectFrom('rotation_revocations')
      .select('id')
      .where('status', '=', 'waiting')
      .where('next_at', '<=', now)
      .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
      .orderBy('next_at')
      .limit(this.#config.concurrency)
      .execute();
    const claimed: string[] = [];
    for (const { id } of due) {
      const result = await this.#deps.db
        .updateTable('rotation_revocations')
        .set({ lease_owner: this.owner, lease_until: this.#leaseUntil() })
        .where('id', '=', id)
        .where('status', '=', 'waiting')
        .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
        .executeTakeFirst();
      if (Number(result.numUpdatedRows) === 1) claimed.push(id);
    }
    return claimed;
  }

  /** Tries one revocation; a refusal is retried with backoff, for as long as it takes. */
  async #payRevocation(id: string): Promise<void> {
    const db = this.#deps.db;
    const revocation = await db.selectFrom('rotation_revocations').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    const run = await db.selectFrom('rotation_runs').selectAll().where('id', '=', revocation.run_id).executeTakeFirstOrThrow();
    const credential = JSON.parse(revocation.credential) as RevocationCredential;
    let evidence: StepEvidence | undefined;
    let failure: string | undefined;
    try {
      evidence = await this.#steps.revoke(this.#input(run, this.#abort.signal), revocation.which as 'old' | 'new', credential);
    } catch (error) {
      if (this.#abort.signal.aborted) return;
      failure = summariseFailure(error, this.#steps.valuesSeen(run.id), 'revoke');
    } finally {
      this.#steps.forget(run.id);
    }
    const nowMs = this.#deps.clock.now();
    const now = new Date(nowMs).toISOString();
    await db.transaction().execute(async (trx) => {
      const attempts = Number(revocation.attempts) + 1;
      if (failure === undefined) {
        const done = await trx
          .updateTable('rotation_revocations')
          .set({ status: 'done', done_at: now, attempts, last_error: null, lease_owner: null, lease_until: null })
          .where('id', '=', id)
          .where('lease_owner', '=', this.owner)
          .executeTakeFirst();
        if (Number(done.numUpdatedRows) !== 1) return;
        await this.#timeline(trx, run.id, 'finish', `revoked ${revocation.which}`, revocation.next_at, now, { ...evidence, attempts }, null);
        await this.#deps.audit.append(trx, { actor: 'rotation', requestId: run.id }, { action: 'rotation.revocation.done', target: run.id, data: { which: revocation.which, ...credential, attempts } }, now);
      } else {
        const nextAt = new Date(nowMs + backoff(attempts, this.#config)).toISOString();
        const retry = await trx
          .updateTable('rotation_revocations')
          .set({ attempts, next_at: nextAt, last_error: failure, lease_owner: null, lease_until: null })
          .where('id', '=', id)
          .where('lease_owner', '=', this.owner)
          .executeTakeFirst();
        if (Number(retry.numUpdatedRows) !== 1) return;
        await this.#deps.audit.append(trx, { actor: 'rotation', requestId: run.id }, { action: 'rotation.revocation.retry', target: run.id, data: { which: revocation.which, ...credential, attempts, nextAt, error: failure } }, now);
      }
    });
  }

  // ---- the scheduler ------------------------------------------------------------------------

  /** Starts the runs that are due, when this server holds the scheduler lease. Returns how many it started. */
  async scheduleDue(): Promise<number> {
    if (!(await this.#holdLease(SCHEDULER_LEASE))) return 0;
    const nowMs = this.#deps.clock.now();
    let started = 0;
    for (const record of await this.#deps.policies.list()) {
      const policy = record.policy;
      if (!policy.enabled) continue;
      for (const due of await this.#dueTargets(policy, nowMs)) {
        try {
          const run = await this.trigger(ENGINE, { policy: record.name, trigger: 'schedule', reason: 'scheduled', scheduledFor: due.scheduledFor, ...(due.kind === 'key' ? { key: due.id } : { secret: due.id }) });
          if (run) started += 1;
        } catch (error) {
          if (!isAppError(error)) throw error; // a target that cannot be rotated now is looked at again next tick
        }
      }
    }
    return started;
  }

  async #dueTargets(policy: RotationPolicy, nowMs: number): Promise<Array<{ kind: TargetKind; id: string; scheduledFor: string }>> {
    const bases: Array<{ kind: TargetKind; id: string; since: number }> = [];
    if (policy.target.secret !== undefined) {
      const versions = await this.#deps.secrets.versions(policy.target.secret).catch(() => undefined);
      const current = versions?.versions.find((version) => version.stages.includes('current'));
      if (current) bases.push({ kind: 'secret', id: policy.target.secret, since: Date.parse(current.createdAt) });
    } else if (policy.target.key !== undefined) {
      const key = await this.#deps.keys.get(policy.target.key).catch(() => undefined);
      if (key?.status === 'active') bases.push({ kind: 'key', id: key.id, since: Date.parse(key.createdAt) });
    } else if (policy.target.keys !== undefined) {
      let cursor: string | undefined;
      do {
        const page = await this.#deps.keys.list({
          status: 'active',
          owner: policy.target.keys.owner,
          labels: Object.entries(policy.target.keys.labels ?? {}),
          limit: 500,
          ...(cursor ? { cursor } : {}),
        });
        for (const key of page.data) bases.push({ kind: 'key', id: key.id, since: Date.parse(key.createdAt) });
        cursor = page.nextCursor ?? undefined;
      } while (cursor !== undefined);
    }
    const out: Array<{ kind: TargetKind; id: string; scheduledFor: string }> = [];
    const { every, cron, window } = policy.schedule;
    for (const base of bases) {
      let dueMs: number | undefined;
      if (every !== undefined) {
        const candidate = base.since + parseDuration(every, 'schedule.every');
        if (candidate <= nowMs) dueMs = candidate;
      } else if (cron !== undefined) {
        const parsed = parseCron(cron);
        const firing = parsed.ok ? latestFiring(parsed.fields, nowMs, tryParseDuration(window ?? '') ?? 3_600_000) : undefined;
        if (firing !== undefined && firing >= base.since) dueMs = firing;
      }
      if (dueMs !== undefined) out.push({ kind: base.kind, id: base.id, scheduledFor: new Date(dueMs).toISOString() });
    }
    return out;
  }

  /** Takes or renews a named lease; true while this server holds it. */
  async #holdLease(name: string): Promise<boolean> {
    const now = this.#nowIso();
    const until = this.#leaseUntil();
    const inserted = await this.#deps.db.insertInto('leases').values({ name, owner: this.owner, expires_at: until }).onConflict((oc) => oc.column('name').doNothing()).executeTakeFirst();
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 1) return true;
    const renewed = await this.#deps.db
      .updateTable('leases')
      .set({ owner: this.owner, expires_at: until })
      .where('name', '=', name)
      .where((eb) => eb.or([eb('owner', '=', this.owner), eb('expires_at', '<', now)]))
      .executeTakeFirst();
    return Number(renewed.numUpdatedRows) === 1;
  }
}

/** A policy sets the overlap: a trigger that names one as well is refused. */
function refuseOverlap(input: TriggerInput, policy: string): void {
  if (input.overlap !== undefined) throw new AppError('ERR_INVALID_REQUEST', `overlap comes from policy ${policy}; leave it out`, { details: [{ field: 'overlap', message: 'set by the policy' }] });
}

/** Whether a keys-by-owner/label policy chooses this key. */
function selects(policy: RotationPolicy, key: { owner: string; labels: Readonly<Record<string, string>> }): boolean {
  const chooser = policy.target.keys;
  if (chooser === undefined) return false;
  if (chooser.owner !== undefined && chooser.owner !== key.owner) return false;
  return Object.entries(chooser.labels ?? {}).every(([name, value]) => key.labels[name] === value);
}

function backoff(attempts: number, config: RotationEngineConfig): number {
  return Math.min(config.retryBaseMs * 2 ** Math.max(0, attempts - 1), config.maxBackoffMs);
}

function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Ids worth putting in the audit event of a step: vendor and key ids and versions, nothing else. */
function pickIds(evidence: StepEvidence): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  for (const field of ['keyId', 'vendorId', 'version', 'replaces'] as const) {
    const value = evidence[field];
    if (typeof value === 'string' || typeof value === 'number') out[field] = value;
  }
  return out;
}


