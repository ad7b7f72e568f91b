/**
 * The hash-chained audit log. Each event stores the previous event's hash and its own, an
 * HMAC under the chain key over every stored field (chain-hash.ts), so an edited, deleted or
 * reordered event breaks the chain and the database alone cannot forge a new one.
 * Appends run inside the caller's transaction; the single `audit_head` row is bumped with an
 * UPDATE … RETURNING first, which serialises concurrent appenders on PostgreSQL (row lock) as
 * SQLite's single writer already does.
 */
import { CompiledQuery, sql, type Kysely, type Transaction } from 'kysely';
import type { Database, AuditEventsTable } from '../store/index.js';
import { KEYED_MARKER_ACTION, SCHEME_KEYED, legacyHash, type ChainHasher } from './chain-hash.js';

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

/** The hash a plain SHA-256 event (before the chain was keyed) has: for tools and tests that rebuild old chains. */
export function hashEvent(row: Omit<AuditEventsTable, 'hash' | 'scheme'>): string {
  return legacyHash(row);
}

/** Appends one event inside the given transaction and returns it. */
export async function appendAudit(
  hasher: ChainHasher,
  trx: Transaction<Database>,
  context: ActorContext,
  event: AuditEventInput,
  time: string,
): Promise<AuditEvent> {
  const rows = await claimAndChain(hasher, trx, context, [event], time);
  if (rows.length === 1) await trx.insertInto('audit_events').values(rows[0]!).execute();
  else await trx.insertInto('audit_events').values(rows).execute();
  const last = rows[rows.length - 1]!;
  await trx.updateTable('audit_head').set({ hash: last.hash }).where('id', '=', 1).execute();
  return toEvent(last);
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
  const rows = await claimAndChain(hasher, trx, context, events, time);
  const insert = bulkInsertText(trx);
  let compiled: { readonly size: number; readonly sql: string } | undefined;
  for (let start = 0; start < rows.length; start += AUDIT_INSERT_CHUNK) {
    const end = Math.min(rows.length, start + AUDIT_INSERT_CHUNK);
    // The statement text depends only on the row count: built once per size, then bound.
    if (compiled?.size !== end - start) compiled = { size: end - start, sql: insert(end - start) };
    const parameters: unknown[] = [];
    for (let i = start; i < end; i++) {
      const row = rows[i]!;
      parameters.push(row.seq, row.time, row.actor, row.action, row.target, row.request_id, row.source_ip, row.data, row.prev_hash, row.hash, row.scheme);
    }
    await trx.executeQuery(CompiledQuery.raw(compiled.sql, parameters));
  }
  const last = rows[rows.length - 1]!;
  await trx.updateTable('audit_head').set({ hash: last.hash }).where('id', '=', 1).execute();
  return last.seq;
}

/**
 * Writes the `audit.chain.keyed` marker now if the chain is not keyed yet (a database from
 * before the keyed chain, or a new one): the switch is then on record from the first start,
 * not from the first change. Returns whether it wrote one.
 */
export async function keyChain(hasher: ChainHasher, db: Kysely<Database>, time: string): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const head = await trx.selectFrom('audit_head').select('scheme').where('id', '=', 1).executeTakeFirst();
    if (!head) throw new Error('audit_head row is missing; run migrations');
    if (head.scheme === SCHEME_KEYED) return false;
    const rows = await claimAndChain(hasher, trx, { actor: 'system' }, [], time);
    await trx.insertInto('audit_events').values(rows).execute();
    await trx.updateTable('audit_head').set({ hash: rows[rows.length - 1]!.hash }).where('id', '=', 1).execute();
    return true;
  });
}

/**
 * Claims sequence numbers by bumping the head with UPDATE … RETURNING (the row lock serialises
 * appenders on PostgreSQL as SQLite's single writer does) and chains the events from the head's
 * hash under the keyed scheme. A head still at the unkeyed scheme gets the marker event first,
 * in the same transaction, so no keyed event ever exists without the marker before it.
 */
async function claimAndChain(
  hasher: ChainHasher,
  trx: Transaction<Database>,
  context: ActorContext,
  events: readonly AuditEventInput[],
  time: string,
): Promise<AuditEventsTable[]> {
  const head = await sql<{ seq: number | string; hash: string; scheme: string }>`
    update audit_head set seq = seq + ${events.length} where id = 1 returning seq, hash, scheme`.execute(trx);
  const current = head.rows[0];
  if (!current) throw new Error('audit_head row is missing; run migrations');
  let last = Number(current.seq);
  let first = last - events.length + 1;
  let prevHash = current.hash;
  const rows: AuditEventsTable[] = [];
  if (current.scheme !== SCHEME_KEYED) {
    await sql`update audit_head set seq = seq + 1, scheme = ${SCHEME_KEYED} where id = 1`.execute(trx);
    const marker = chained(hasher, { actor: 'system' }, { action: KEYED_MARKER_ACTION, data: { scheme: SCHEME_KEYED, unkeyedEvents: first - 1 } }, first, time, prevHash);
    rows.push(marker);
    prevHash = marker.hash;
    first += 1;
    last += 1;
  }
  for (let i = 0; i < events.length; i++) {
    const row = chained(hasher, context, events[i]!, first + i, time, prevHash);
    rows.push(row);
    prevHash = row.hash;
  }
  return rows;
}

function chained(hasher: ChainHasher, context: ActorContext, event: AuditEventInput, seq: number, time: string, prevHash: string): AuditEventsTable {
  const row: AuditEventsTable = {
    seq,
    time,
    actor: context.actor,
    action: event.action,
    target: event.target ?? null,
    request_id: context.requestId ?? null,
    source_ip: context.sourceIp ?? null,
    data: JSON.stringify(event.data ?? {}),
    prev_hash: prevHash,
    hash: '',
    scheme: SCHEME_KEYED,
  };
  row.hash = hasher.keyed(row);
  return row;
}

const AUDIT_INSERT_CHUNK = 1_000;
const AUDIT_COLUMNS = 11;

/**
 * A multi-row INSERT of audit events in the executor's own SQL: a one-row statement compiled by
 * Kysely gives the quoting and the placeholder style (`?` or `$n`); the rows are repeated from it,
 * which costs nothing per value where compiling a thousand-row statement walks every value.
 */
function bulkInsertText(trx: Transaction<Database>): (rows: number) => string {
  const one: AuditEventsTable = { seq: 0, time: '', actor: '', action: '', target: null, request_id: null, source_ip: null, data: '', prev_hash: '', hash: '', scheme: '' };
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

export function toEvent(row: AuditEventsTable): AuditEvent {
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
