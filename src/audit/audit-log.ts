/**
 * The hash-chained audit log. Each event stores the previous event's hash and its own,
 * SHA-256 over every stored field, so an edited, deleted or reordered event breaks the chain.
 * Appends run inside the caller's transaction; the single `audit_head` row is bumped with an
 * UPDATE … RETURNING first, which serialises concurrent appenders on PostgreSQL (row lock) as
 * SQLite's single writer already does.
 */
import * as crypto from 'node:crypto';
import { CompiledQuery, sql, type Kysely, type Transaction } from 'kysely';
import type { Database, AuditEventsTable } from '../store/index.js';

export const GENESIS_HASH = '0'.repeat(64);

/** Who did it, from where: carried from the HTTP request into every event. */
export interface ActorContext {
  readonly actor: string;
  readonly requestId?: string | undefined;
  readonly sourceIp?: string | undefined;
}

export interface AuditEventInput {
  readonly action: string;
  readonly target?: string | null;
  /** Plain facts about the change. Never a key, a hash or a secret value. */
  readonly data?: Record<string, unknown>;
}

export interface AuditEvent {
  readonly seq: number;
  readonly time: string;
  readonly actor: string;
  readonly action: string;
  readonly target: string | null;
  readonly requestId: string | null;
  readonly sourceIp: string | null;
  readonly data: Record<string, unknown>;
  readonly prevHash: string;
  readonly hash: string;
}

export type Executor = Kysely<Database> | Transaction<Database>;

/** Computes an event's hash from its stored fields (the chain key lives in here, never in the database). */
export interface ChainHasher {
  hash(row: Omit<AuditEventsTable, 'hash'>): string;
}

/** One-shot SHA-256 where Node has it (20.12+, about twice as fast on short input), else a Hash object. */
const sha256Hex: (text: string) => string =
  typeof (crypto as { hash?: unknown }).hash === 'function'
    ? (text) => (crypto as unknown as { hash(alg: string, data: string, enc: string): string }).hash('sha256', text, 'hex')
    : (text) => crypto.createHash('sha256').update(text).digest('hex');

export function hashEvent(row: Omit<AuditEventsTable, 'hash'>): string {
  const canonical = JSON.stringify([
    row.seq,
    row.time,
    row.actor,
    row.action,
    row.target,
    row.request_id,
    row.source_ip,
    row.data,
    row.prev_hash,
  ]);
  return sha256Hex(canonical);
}

/** Appends one event inside the given transaction and returns it. */
export async function appendAudit(
  hasher: ChainHasher,
  trx: Transaction<Database>,
  context: ActorContext,
  event: AuditEventInput,
  time: string,
): Promise<AuditEvent> {
  const head = await sql<{ seq: number | string; hash: string }>`
    update audit_head set seq = seq + 1 where id = 1 returning seq, hash`.execute(trx);
  const current = head.rows[0];
  if (!current) throw new Error('audit_head row is missing; run migrations');
  const row: Omit<AuditEventsTable, 'hash'> = {
    seq: Number(current.seq),
    time,
    actor: context.actor,
    action: event.action,
    target: event.target ?? null,
    request_id: context.requestId ?? null,
    source_ip: context.sourceIp ?? null,
    data: JSON.stringify(event.data ?? {}),
    prev_hash: current.hash,
  };
  const hash = hasher.hash(row);
  await trx.insertInto('audit_events').values({ ...row, hash }).execute();
  await trx.updateTable('audit_head').set({ hash }).where('id', '=', 1).execute();
  return toEvent({ ...row, hash });
}

/**
 * Appends many events inside the given transaction with one bump of the head: the chain is the
 * same as appending them one by one, at a fraction of the statements (bulk revocation writes an
 * event per key). Returns the sequence number of the last event, or undefined for none.
 */
export async function appendAuditBatch(
  hasher: ChainHasher,
  trx: Transaction<Database>,
  context: ActorContext,
  events: readonly AuditEventInput[],
  time: string,
): Promise<number | undefined> {
  if (events.length === 0) return undefined;
  const head = await sql<{ seq: number | string; hash: string }>`
    update audit_head set seq = seq + ${events.length} where id = 1 returning seq, hash`.execute(trx);
  const current = head.rows[0];
  if (!current) throw new Error('audit_head row is missing; run migrations');
  const last = Number(current.seq);
  let prevHash = current.hash;
  const first = last - events.length + 1;
  const requestId = context.requestId ?? null;
  const sourceIp = context.sourceIp ?? null;
  const insert = bulkInsertText(trx);
  let compiled: { readonly size: number; readonly sql: string } | undefined;
  for (let start = 0; start < events.length; start += AUDIT_INSERT_CHUNK) {
    const chunk: AuditEventsTable[] = [];
    for (let i = start; i < Math.min(events.length, start + AUDIT_INSERT_CHUNK); i++) {
      const event = events[i]!;
      const row: AuditEventsTable = {
        seq: first + i,
        time,
        actor: context.actor,
        action: event.action,
        target: event.target ?? null,
        request_id: requestId,
        source_ip: sourceIp,
        data: JSON.stringify(event.data ?? {}),
        prev_hash: prevHash,
        hash: '',
      };
      prevHash = hasher.hash(row);
      row.hash = prevHash;
      chunk.push(row);
    }
    // The statement text depends only on the row count: built once per size, then bound.
    if (compiled?.size !== chunk.length) compiled = { size: chunk.length, sql: insert(chunk.length) };
    const parameters: unknown[] = [];
    for (const row of chunk) {
      parameters.push(row.seq, row.time, row.actor, row.action, row.target, row.request_id, row.source_ip, row.data, row.prev_hash, row.hash);
    }
    await trx.executeQuery(CompiledQuery.raw(compiled.sql, parameters));
  }
  await trx.updateTable('audit_head').set({ hash: prevHash }).where('id', '=', 1).execute();
  return last;
}

const AUDIT_INSERT_CHUNK = 1_000;
const AUDIT_COLUMNS = 10;

/**
 * A multi-row INSERT of audit events in the executor's own SQL: a one-row statement compiled by
 * Kysely gives the quoting and the placeholder style (`?` or `$n`); the rows are repeated from it,
 * which costs nothing per value where compiling a thousand-row statement walks every value.
 */
function bulkInsertText(trx: Transaction<Database>): (rows: number) => string {
  const one: AuditEventsTable = { seq: 0, time: '', actor: '', action: '', target: null, request_id: null, source_ip: null, data: '', prev_hash: '', hash: '' };
  const compiled = trx.insertInto('audit_events').values(one).compile();
  const at = compiled.sql.lastIndexOf('(');
  const head = compiled.sql.slice(0, at);
  const numbered = compiled.sql.includes('$1');
  if (compiled.parameters.length !== AUDIT_COLUMNS || !/^\((\?|\$\d+)(, (\?|\$\d+))*\)$/.test(compiled.sql.slice(at))) {
    throw new Error(`unexpected audit insert shape: ${compiled.sql}`);
  }
  return (rows) => {
    const tuples: string[] = [];
    for (let r = 0; r < rows; r++) {
      const marks: string[] = [];
      for (let c = 1; c <= AUDIT_COLUMNS; c++) marks.push(numbered ? `$${r * AUDIT_COLUMNS + c}` : '?');
      tuples.push(`(${marks.join(', ')})`);
    }
    return head + tuples.join(', ');
  };
}

export interface ListAuditOptions {
  /** Return events with seq greater than this. */
  readonly after?: number;
  readonly limit: number;
  readonly target?: string;
  readonly action?: string;
  readonly actor?: string;
}

export async function listAudit(db: Executor, options: ListAuditOptions): Promise<AuditEvent[]> {
  let query = db.selectFrom('audit_events').selectAll().orderBy('seq', 'asc').limit(options.limit);
  if (options.after !== undefined) query = query.where('seq', '>', options.after);
  if (options.target !== undefined) query = query.where('target', '=', options.target);
  if (options.action !== undefined) query = query.where('action', '=', options.action);
  if (options.actor !== undefined) query = query.where('actor', '=', options.actor);
  const rows = await query.execute();
  return rows.map(toEvent);
}

export interface ChainProblem {
  /** The first event found wrong (or the first missing sequence number). */
  readonly seq: number;
  readonly kind: 'edited' | 'deleted' | 'reordered' | 'truncated';
  readonly message: string;
}

export interface ChainVerification {
  readonly ok: boolean;
  readonly events: number;
  readonly headSeq: number;
  readonly problem?: ChainProblem;
}

export interface VerifyChainOptions {
  readonly batchSize?: number;
  readonly onProgress?: (checked: number, total: number) => void;
}

/** Walks the whole chain in sequence order and names the first broken event. */
export async function verifyChain(hasher: ChainHasher, db: Executor, options: VerifyChainOptions = {}): Promise<ChainVerification> {
  const batchSize = options.batchSize ?? 5_000;
  const headRow = await db.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 1).executeTakeFirst();
  const headSeq = Number(headRow?.seq ?? 0);
  const countRow = await db
    .selectFrom('audit_events')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .executeTakeFirst();
  const total = Number(countRow?.n ?? 0);
  let expectedSeq = 1;
  let prevHash = GENESIS_HASH;
  let checked = 0;
  let after = 0;
  const fail = (problem: ChainProblem): ChainVerification => ({ ok: false, events: total, headSeq, problem });
  for (;;) {
    const rows = await db
      .selectFrom('audit_events')
      .selectAll()
      .where('seq', '>', after)
      .orderBy('seq', 'asc')
      .limit(batchSize)
      .execute();
    if (rows.length === 0) break;
    for (const raw of rows) {
      const row = { ...raw, seq: Number(raw.seq) };
      if (row.seq !== expectedSeq) {
        return fail({
          seq: expectedSeq,
          kind: 'deleted',
          message: `event #${expectedSeq}${row.seq - 1 > expectedSeq ? `…#${row.seq - 1}` : ''} is missing (deleted) before event #${row.seq}`,
        });
      }
      const { hash, ...rest } = row;
      if (hasher.hash(rest) !== hash) {
        return fail({ seq: row.seq, kind: 'edited', message: `event #${row.seq} does not match its own hash: it was edited` });
      }
      if (row.prev_hash !== prevHash) {
        return fail({
          seq: row.seq,
          kind: 'reordered',
          message: `event #${row.seq} does not follow event #${row.seq - 1}: the chain was reordered or rewritten here`,
        });
      }
      prevHash = hash;
      expectedSeq += 1;
      checked += 1;
    }
    after = Number(rows[rows.length - 1]!.seq);
    options.onProgress?.(checked, total);
  }
  const lastSeq = expectedSeq - 1;
  if (headRow && (lastSeq !== headSeq || headRow.hash !== prevHash)) {
    if (lastSeq < headSeq) {
      return fail({
        seq: lastSeq + 1,
        kind: 'truncated',
        message: `events #${lastSeq + 1}…#${headSeq} are missing: the end of the log was deleted`,
      });
    }
    return fail({ seq: lastSeq, kind: 'edited', message: `the chain head does not match event #${lastSeq}` });
  }
  return { ok: true, events: total, headSeq };
}

function toEvent(row: AuditEventsTable): AuditEvent {
  return {
    seq: Number(row.seq),
    time: row.time,
    actor: row.actor,
    action: row.action,
    target: row.target,
    requestId: row.request_id,
    sourceIp: row.source_ip,
    data: JSON.parse(row.data) as Record<string, unknown>,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}
