/**
 * Break-glass incidents: revoke or rotate every service key a selector picks, in minutes or
 * less, with one incident record and one audit event per key.
 *
 * Plan, then apply: `plan` is a read that lists what a selector picks (the dry run); `revoke`
 * and `rotate` take that plan and apply it in batched transactions, each batch with its audit
 * events, because SQLite has one writer and a 100,000-key transaction would stall every other
 * write for its whole length. After each batch commits its keys are dropped from this server's
 * verify cache (the very next verify answers REVOKED); other servers see the per-key audit
 * events on their change feed. A batch re-checks each key under its write lock, so a key
 * changed since the plan is skipped, never double-revoked or rotated twice.
 *
 * The incident row is `running` while batches commit, then `done` (or `failed`, with how many
 * keys were done). A crash mid-way leaves it `running` with the keys done so far committed and
 * audited; running the same selector again finishes the job, since done keys no longer match.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import { type ActorContext, type AuditEventInput } from '../audit/index.js';
import type { AuditLog } from '../audit/index.js';
import type { ApiKeysTable, Database, StoreDialect, IncidentsTable } from '../store/index.js';
import { AppError, isAppError } from '../shared/errors.js';
import { decodeCursor, encodeCursor } from '../shared/cursor.js';
import { formatDuration } from '../shared/duration.js';
import { newKeyIdBody, type RandomBytes } from '../shared/ids.js';
import type { Clock } from '../shared/clock.js';
import { repeatEvery } from '../shared/repeat.js';

/** A running incident with no committed batch for this long was interrupted (a batch takes well under a second). */
export const INTERRUPTED_AFTER_MS = 5 * 60_000;
import { formatSelector, parseSelector, type IncidentSelector } from './incident-selector.js';
import { labelIn, readLabels, writeLabels } from './key-labels.js';
import { unrotatableReason } from './key-row.js';
import { rotationAudit, type KeyService } from './key-service.js';
import type { KeyEnv } from './key-format.js';

export type IncidentAction = 'revoke' | 'rotate';
export type IncidentStatus = IncidentsTable['status'];

export interface IncidentServiceDeps {
  readonly db: Kysely<Database>;
  /** The audit log every change is written to, in the change's transaction. */
  readonly audit: AuditLog;
  readonly dialect: StoreDialect;
  readonly clock: Clock;
  readonly random: RandomBytes;
  readonly keys: KeyService;
  /** Keys per transaction; defaults suit SQLite's single writer and PostgreSQL's parameter limit. */
  readonly batch?: { readonly revoke?: number; readonly rotate?: number };
}

/** A key a plan picks: never its secret or hash. */
export interface PlannedKey {
  readonly id: string;
  readonly owner: string;
  readonly env: KeyEnv;
  readonly createdAt: string;
}

export interface IncidentPlan {
  readonly action: IncidentAction;
  /** The selector in canonical form. */
  readonly select: string;
  readonly selector: IncidentSelector;
  readonly total: number;
  /** Every key picked, oldest first. */
  readonly keys: PlannedKey[];
}

export interface IncidentRecord {
  readonly id: string;
  readonly action: IncidentAction;
  readonly select: string;
  readonly reason: string;
  readonly status: IncidentStatus;
  /** Keys revoked or rotated. */
  readonly keyCount: number;
  /** Keys the selector picked when the incident opened. */
  readonly plannedCount: number;
  readonly overlap: string | null;
  readonly startedAt: string;
  readonly finishedAt: string | null;
  readonly createdBy: string;
  readonly failure: string | null;
}

/** A successor from a mass rotation; `key` is shown once, here, and never stored. */
export interface IncidentRotatedKey {
  readonly id: string;
  readonly replaces: string;
  readonly key: string;
}

export interface IncidentRunOptions {
  /** Called after each batch commits, and once at the start with done = 0. */
  readonly onProgress?: (done: number, total: number) => void;
}

export interface RevokeIncidentResult {
  readonly incident: IncidentRecord;
}

export interface RotateIncidentResult {
  readonly incident: IncidentRecord;
  readonly keys: IncidentRotatedKey[];
}

export interface IncidentPage {
  readonly data: IncidentRecord[];
  readonly nextCursor: string | null;
}

export const DEFAULT_REVOKE_BATCH = 5_000;
/** A successor row has 23 columns: 500 of them stay under SQLite's 32,766 bound parameters. */
export const DEFAULT_ROTATE_BATCH = 500;
const INCIDENT_ID_RE = /^inc_[0-9A-Za-z]{22}$/;

export class IncidentService {
  readonly #deps: IncidentServiceDeps;
  #stopSweep: (() => void) | undefined;

  constructor(deps: IncidentServiceDeps) {
    this.#deps = deps;
  }

  /** What a selector picks for an action, changing nothing. */
  async plan(action: IncidentAction, select: string): Promise<IncidentPlan> {
    const selector = parseSelector(select);
    const keys = await this.#select(selector, action, iso(this.#deps.clock.now()));
    return { action, select: formatSelector(selector), selector, total: keys.length, keys };
  }

  /** The plan the executors work from: ids only, in the order they were written (see #select). */
  async #planIds(action: IncidentAction, select: string): Promise<{ selector: IncidentSelector; select: string; ids: string[] }> {
    const selector = parseSelector(select);
    const ids = await this.#select(selector, action, iso(this.#deps.clock.now()), true);
    return { selector, select: formatSelector(selector), ids };
  }

  /** Revokes every key the selector picks, in batches; one incident, one audit event per key. */
  async revoke(ctx: ActorContext, select: string, reason: string, options: IncidentRunOptions = {}): Promise<RevokeIncidentResult> {
    checkReason(reason);
    const plan = await this.#planIds('revoke', select);
    const total = plan.ids.length;
    const batchSize = this.#deps.batch?.revoke ?? DEFAULT_REVOKE_BATCH;
    const incident = await this.#open(ctx, 'revoke', plan, reason, null);
    let done = 0;
    let affected = 0;
    options.onProgress?.(0, total);
    try {
      for (let start = 0; start < total; start += batchSize) {
        const ids = plan.ids.slice(start, start + batchSize);
        const now = iso(this.#deps.clock.now());
        const revoked = await this.#deps.db.transaction().execute(async (trx) => {
          // The guard skips a key revoked since the plan; only keys revoked here are audited.
          const rows = await trx
            .updateTable('api_keys')
            .set({ revoked_at: now, revoke_reason: reason, updated_at: now })
            .where('id', 'in', ids)
            .where('kind', '=', 'service')
            .where('revoked_at', 'is', null)
            .where('retired_at', 'is', null)
            .returning('id')
            .execute();
          const events: AuditEventInput[] = rows.map((row) => ({ action: 'key.revoked', target: row.id, data: { reason, incident: incident.id } }));
          await this.#deps.audit.appendBatch(trx, ctx, events, now);
          await this.#count(trx, incident.id, rows.length);
          return rows.map((row) => row.id);
        });
        // Counted before anything else can throw: the batch has committed.
        affected += revoked.length;
        this.#deps.keys.invalidate(revoked);
        done += ids.length;
        options.onProgress?.(done, total);
      }
    } catch (error) {
      throw await this.#fail(ctx, incident.id, affected, error);
    }
    return { incident: await this.#close(ctx, incident.id, affected) };
  }

  /**
   * Rotates every key the selector picks as `KeyService.rotate` does (same successor rows, same
   * audit events, labels copied), in batches. The old keys stay VALID until the overlap ends.
   * If a batch fails after others committed, the incident is marked `failed` and the keys
   * minted so far are still returned (they are shown nowhere else); with none, the error is thrown.
   */
  async rotate(ctx: ActorContext, select: string, reason: string, overlap: string | undefined, options: IncidentRunOptions = {}): Promise<RotateIncidentResult> {
    const { keys } = this.#deps;
    checkReason(reason);
    const overlapMs = keys.overlapOf(overlap);
    const plan = await this.#planIds('rotate', select);
    const total = plan.ids.length;
    const batchSize = this.#deps.batch?.rotate ?? DEFAULT_ROTATE_BATCH;
    const incident = await this.#open(ctx, 'rotate', plan, reason, formatDuration(overlapMs));
    const out: IncidentRotatedKey[] = [];
    let done = 0;
    options.onProgress?.(0, total);
    try {
      for (let start = 0; start < total; start += batchSize) {
        const ids = plan.ids.slice(start, start + batchSize);
        const now = this.#deps.clock.now();
        const nowIso = iso(now);
        const rotated = await this.#deps.db.transaction().execute(async (trx) => {
          // Re-read under the write lock: a key rotated, revoked or disabled since the plan is skipped.
          const query = this.#deps.dialect.lockForUpdate(trx.selectFrom('api_keys').selectAll().where('id', 'in', ids).orderBy('created_at').orderBy('id'));
          const olds = (await query.execute()).filter((row) => row.kind === 'service' && unrotatableReason(row, nowIso) === null);
          const labels = await readLabels(trx, olds.map((row) => row.id));
          const pairs = olds.map((old) => ({ old, successor: keys.successorOf(old, ctx, now, overlapMs) }));
          await insertRows(trx, pairs.map((pair) => pair.successor.row));
          await writeLabels(
            trx,
            pairs.map(({ old, successor }) => [successor.row.id, labels.get(old.id) ?? {}] as const),
          );
          await linkSuccessors(trx, pairs.map(({ old, successor }) => [old.id, successor.row.id, successor.graceEndsAt] as const), nowIso);
          const events = pairs.flatMap(({ old, successor }) => rotationAudit(old, successor.row, overlapMs, successor.graceEndsAt, { reason, incident: incident.id }));
          await this.#deps.audit.appendBatch(trx, ctx, events, nowIso);
          await this.#count(trx, incident.id, pairs.length);
          return pairs;
        });
        // Kept before anything else can throw: the batch has committed and these keys exist.
        for (const { old, successor } of rotated) out.push({ id: successor.row.id, replaces: old.id, key: successor.key });
        keys.invalidate(rotated.flatMap(({ old, successor }) => [old.id, successor.row.id]));
        done += ids.length;
        options.onProgress?.(done, total);
      }
    } catch (error) {
      const failure = await this.#fail(ctx, incident.id, out.length, error);
      if (out.length === 0) throw failure;
      // Batches that committed minted keys that exist nowhere else: hand them over, marked failed.
      const record = await this.get(incident.id).catch(() => ({ ...incident, status: 'failed' as const, keyCount: out.length }));
      return { incident: record, keys: out };
    }
    return { incident: await this.#close(ctx, incident.id, out.length), keys: out };
  }

  async get(id: string): Promise<IncidentRecord> {
    if (!INCIDENT_ID_RE.test(id)) throw notFound(id);
    const row = await this.#deps.db.selectFrom('incidents').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound(id);
    return toRecord(row);
  }

  /** Newest first. */
  async list(options: { readonly limit?: number; readonly cursor?: string } = {}): Promise<IncidentPage> {
    const limit = options.limit ?? 50;
    let query = this.#deps.db.selectFrom('incidents').selectAll();
    if (options.cursor !== undefined) {
      const [startedAt, id] = decodeCursor(options.cursor);
      query = query.where((eb) => eb.or([eb('started_at', '<', startedAt), eb.and([eb('started_at', '=', startedAt), eb('id', '<', id)])]));
    }
    const rows = await query.orderBy('started_at', 'desc').orderBy('id', 'desc').limit(limit + 1).execute();
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return {
      data: page.map(toRecord),
      nextCursor: rows.length > limit && last ? encodeCursor(last.started_at, last.id) : null,
    };
  }

  /** Service keys the selector picks that the action can still act on, oldest first. */
  async #select(selector: IncidentSelector, action: IncidentAction, nowIso: string): Promise<PlannedKey[]>;
  async #select(selector: IncidentSelector, action: IncidentAction, nowIso: string, idsOnly: true): Promise<string[]>;
  async #select(selector: IncidentSelector, action: IncidentAction, nowIso: string, idsOnly = false): Promise<PlannedKey[] | string[]> {
    let query = this.#deps.db
      .selectFrom('api_keys')
      .select(idsOnly ? ['id'] : ['id', 'owner', 'env', 'created_at'])
      .where('kind', '=', 'service')
      .where('revoked_at', 'is', null)
      .where('retired_at', 'is', null);
    if (action === 'rotate') {
      query = query.where('replaced_by', 'is', null).where('expires_at', '>', nowIso).where('disabled_at', 'is', null);
    }
    if (selector.owners.length > 0) query = query.where('owner', 'in', selector.owners);
    if (selector.envs.length > 0) query = query.where('env', 'in', selector.envs);
    if (selector.keyIds.length > 0) query = query.where('id', 'in', selector.keyIds);
    if (selector.createdBefore !== null) query = query.where('created_at', '<', selector.createdBefore);
    for (const [name, values] of Object.entries(selector.labels)) query = query.where(labelIn(name, values));
    // Oldest first: rows were written in that order, so each batch touches neighbouring pages
    // (on SQLite, random order writes several times the pages for the same keys).
    const rows = (await query.orderBy('created_at').orderBy('id').execute()) as Array<Pick<ApiKeysTable, 'id' | 'owner' | 'env' | 'created_at'>>;
    if (idsOnly) return rows.map((row) => row.id);
    return rows.map((row) => ({ id: row.id, owner: row.owner, env: row.env, createdAt: row.created_at }));
  }

  async #open(
    ctx: ActorContext,
    action: IncidentAction,
    plan: { readonly selector: IncidentSelector; readonly select: string; readonly ids: readonly string[] },
    reason: string,
    overlap: string | null,
  ): Promise<IncidentRecord> {
    const now = iso(this.#deps.clock.now());
    const row: IncidentsTable = {
      id: `inc_${newKeyIdBody(this.#deps.random)}`,
      action,
      selector: JSON.stringify(plan.selector),
      reason,
      status: 'running',
      key_count: 0,
      planned_count: plan.ids.length,
      overlap,
      started_at: now,
      finished_at: null,
      created_by: ctx.actor,
      failure: null,
      updated_at: now,
    };
    await this.#deps.db.transaction().execute(async (trx) => {
      await trx.insertInto('incidents').values(row).execute();
      await this.#deps.audit.append(trx, ctx, {
        action: 'incident.opened',
        target: row.id,
        data: { action, select: plan.select, reason, planned: plan.ids.length, ...(overlap !== null ? { overlap } : {}) },
      }, now);
    });
    return toRecord(row);
  }

  async #count(trx: Transaction<Database>, id: string, n: number): Promise<void> {
    if (n === 0) return;
    await trx
      .updateTable('incidents')
      .set((eb) => ({ key_count: eb('key_count', '+', n), updated_at: iso(this.#deps.clock.now()) }))
      .where('id', '=', id)
      .execute();
  }

  /**
   * Closes incidents that stopped moving: a server that died between batches leaves its incident
   * `running` with no one to finish it. After `staleMs` without a committed batch it is marked
   * failed (what committed stays done), with an audit event; running the same selector again
   * finishes the job. Returns how many it closed.
   */
  async closeInterrupted(staleMs = INTERRUPTED_AFTER_MS): Promise<number> {
    const nowMs = this.#deps.clock.now();
    const now = iso(nowMs);
    const cutoff = iso(nowMs - staleMs);
    return this.#deps.db.transaction().execute(async (trx) => {
      const stale = await trx.selectFrom('incidents').select(['id', 'key_count', 'planned_count']).where('status', '=', 'running').where('updated_at', '<', cutoff).execute();
      let closed = 0;
      for (const row of stale) {
        const failure = `interrupted: ${row.key_count} of ${row.planned_count} keys done; run the same selector again to finish`;
        const updated = await trx
          .updateTable('incidents')
          .set({ status: 'failed', finished_at: now, failure, updated_at: now })
          .where('id', '=', row.id)
          .where('status', '=', 'running')
          .executeTakeFirst();
        if (Number(updated.numUpdatedRows) !== 1) continue;
        await this.#deps.audit.append(trx, { actor: 'system' }, { action: 'incident.closed', target: row.id, data: { status: 'failed', keys: Number(row.key_count), failure } }, now);
        closed += 1;
      }
      return closed;
    });
  }

  /** Looks for interrupted incidents now and then (and once at start). */
  start(everyMs = 60_000): void {
    if (this.#stopSweep) return;
    void this.closeInterrupted().catch(() => undefined);
    this.#stopSweep = repeatEvery(everyMs, () => this.closeInterrupted());
  }

  stop(): void {
    this.#stopSweep?.();
    this.#stopSweep = undefined;
  }

  async #close(ctx: ActorContext, id: string, keyCount: number): Promise<IncidentRecord> {
    const now = iso(this.#deps.clock.now());
    await this.#deps.db.transaction().execute(async (trx) => {
      await trx.updateTable('incidents').set({ status: 'done', finished_at: now }).where('id', '=', id).execute();
      await this.#deps.audit.append(trx, ctx, { action: 'incident.closed', target: id, data: { status: 'done', keys: keyCount } }, now);
    });
    return this.get(id);
  }

  /** Marks the incident failed (what was committed stays done) and returns the error to throw. */
  async #fail(ctx: ActorContext, id: string, keyCount: number, error: unknown): Promise<unknown> {
    // A message from our own registry is safe to keep; anything else may carry driver detail.
    const failure = isAppError(error) ? error.message.slice(0, 500) : 'internal error';
    const now = iso(this.#deps.clock.now());
    try {
      await this.#deps.db.transaction().execute(async (trx) => {
        await trx.updateTable('incidents').set({ status: 'failed', finished_at: now, failure, updated_at: now }).where('id', '=', id).execute();
        await this.#deps.audit.append(trx, ctx, { action: 'incident.closed', target: id, data: { status: 'failed', keys: keyCount, failure } }, now);
      });
    } catch {
      // The store is failing: the row stays `running`, which says as much.
    }
    return error;
  }
}

/**
 * Points each old row at its successor in one statement per batch: UPDATE … FROM (VALUES …),
 * which SQLite (3.33+) and PostgreSQL both read, and both name the columns column1, column2, ….
 * The rows are locked (PostgreSQL) or the writer is ours (SQLite), so no guard is needed here.
 */
async function linkSuccessors(trx: Transaction<Database>, links: ReadonlyArray<readonly [string, string, string]>, nowIso: string): Promise<void> {
  if (links.length === 0) return;
  const values = sql.join(links.map(([oldId, successorId, graceEndsAt]) => sql`(${oldId}, ${successorId}, ${graceEndsAt})`));
  await sql`update api_keys set replaced_by = v.column2, grace_ends_at = v.column3, updated_at = ${nowIso}
    from (values ${values}) as v where api_keys.id = v.column1`.execute(trx);
}

/** 23 columns a row: chunks of 500 stay under both dialects' bound-parameter limits. */
async function insertRows(trx: Transaction<Database>, rows: ApiKeysTable[]): Promise<void> {
  for (let start = 0; start < rows.length; start += 500) {
    await trx.insertInto('api_keys').values(rows.slice(start, start + 500)).execute();
  }
}

/** The reason is kept on the incident and on every key row, so it must fit both. */
function checkReason(reason: string): void {
  if (reason.trim() === '' || reason.length > 500 || /[\u0000-\u001f\u007f]/.test(reason)) {
    throw new AppError('ERR_INVALID_REQUEST', 'reason must be 1–500 printable characters', { details: [{ field: 'reason', message: '1–500 printable characters' }] });
  }
}

function toRecord(row: IncidentsTable): IncidentRecord {
  return {
    id: row.id,
    action: row.action,
    select: formatSelector(JSON.parse(row.selector) as IncidentSelector),
    reason: row.reason,
    status: row.status,
    keyCount: Number(row.key_count),
    plannedCount: Number(row.planned_count),
    overlap: row.overlap,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    createdBy: row.created_by,
    failure: row.failure,
  };
}

function notFound(id: string): AppError {
  return new AppError('ERR_INCIDENT_NOT_FOUND', `no incident with id ${id.slice(0, 40)}`);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
