/**
 * Walks the whole chain in sequence order, checks every event's hash under its scheme and its
 * link to the one before, then the head row and every checkpoint it is given, and names the
 * first thing found wrong. What the database alone cannot hide: an event it cannot re-key
 * (edited, inserted), a gap (deleted), a log never keyed or unkeyed after the switch (rewritten
 * with plain SHA-256), and, with checkpoints kept elsewhere, a log that ends too early
 * (truncated, emptied) or holds another hash than was signed (rewritten).
 */
import type { AuditEventsTable } from '../store/index.js';
import { GENESIS_HASH, type Executor } from './audit-log.js';
import { KEYED_MARKER_ACTION, SCHEME_KEYED, type ChainHasher } from './chain-hash.js';
import type { CheckpointEntry, CheckpointKey } from './checkpoints.js';

export type ChainProblemKind =
  | 'edited'
  | 'deleted'
  | 'reordered'
  | 'truncated'
  | 'rewritten'
  | 'unkeyed'
  | 'empty'
  | 'missing-head'
  | 'bad-checkpoint';

export interface ChainProblem {
  /** The first event found wrong (or the first missing sequence number, or the checkpoint's seq). */
  readonly seq: number;
  readonly kind: ChainProblemKind;
  readonly message: string;
  /** The checkpoint involved, when one is: its file (or source) and line. */
  readonly checkpoint?: { readonly source: string; readonly line: number };
}

export interface ChainVerification {
  readonly ok: boolean;
  readonly events: number;
  readonly headSeq: number;
  /** Checkpoints checked against the log. */
  readonly checkpoints: number;
  /** The first keyed event (the `audit.chain.keyed` marker), when the log has one. */
  readonly keyedFrom?: number;
  readonly problem?: ChainProblem;
}

export interface VerifyChainOptions {
  readonly batchSize?: number;
  readonly onProgress?: (checked: number, total: number) => void;
  /** Signed checkpoints to hold the log to (the checkpoints file, `--checkpoints FILE`, the request). */
  readonly checkpoints?: readonly CheckpointEntry[];
}

export async function verifyChain(hasher: ChainHasher, checkpointKey: CheckpointKey, db: Executor, options: VerifyChainOptions = {}): Promise<ChainVerification> {
  const batchSize = options.batchSize ?? 5_000;
  const entries = options.checkpoints ?? [];
  const headRow = await db.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 1).executeTakeFirst();
  const headSeq = Number(headRow?.seq ?? 0);
  const countRow = await db
    .selectFrom('audit_events')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .executeTakeFirst();
  const total = Number(countRow?.n ?? 0);
  let keyedFrom: number | undefined;
  const fail = (problem: ChainProblem): ChainVerification => ({
    ok: false,
    events: total,
    headSeq,
    checkpoints: entries.length,
    ...(keyedFrom !== undefined ? { keyedFrom } : {}),
    problem,
  });
  const where = (entry: CheckpointEntry) => ({ source: entry.source, line: entry.line });
  const named = (entry: CheckpointEntry) => `checkpoint ${entry.source}:${entry.line}`;

  // Checkpoints first: one that is not signed by this server's key proves nothing, and says so.
  const bySeq = new Map<number, CheckpointEntry[]>();
  for (const entry of entries) {
    const checkpoint = entry.checkpoint;
    if (!checkpoint) return fail({ seq: 0, kind: 'bad-checkpoint', message: `${named(entry)} is not a checkpoint line`, checkpoint: where(entry) });
    if (checkpoint.keyId !== checkpointKey.publicKey.keyId) {
      return fail({
        seq: checkpoint.seq,
        kind: 'bad-checkpoint',
        message: `${named(entry)} is signed by key ${checkpoint.keyId}, not this master key's checkpoint key ${checkpointKey.publicKey.keyId}`,
        checkpoint: where(entry),
      });
    }
    if (!checkpointKey.verify(checkpoint)) {
      return fail({ seq: checkpoint.seq, kind: 'bad-checkpoint', message: `${named(entry)} has a bad signature: it was altered or forged`, checkpoint: where(entry) });
    }
    const list = bySeq.get(checkpoint.seq) ?? [];
    list.push(entry);
    bySeq.set(checkpoint.seq, list);
  }

  let expectedSeq = 1;
  let prevHash = GENESIS_HASH;
  let checked = 0;
  let after = 0;
  for (;;) {
    const rows = await db.selectFrom('audit_events').selectAll().where('seq', '>', after).orderBy('seq', 'asc').limit(batchSize).execute();
    if (rows.length === 0) break;
    for (const raw of rows) {
      const { hash, scheme, ...rest } = raw as AuditEventsTable;
      const row = { ...rest, seq: Number(rest.seq) };
      if (row.seq !== expectedSeq) {
        const range = `#${expectedSeq}${row.seq - 1 > expectedSeq ? `…#${row.seq - 1}` : ''}`;
        return fail({
          seq: expectedSeq,
          kind: 'deleted',
          message: expectedSeq === 1 ? `event ${range} is missing (deleted): the log begins at event #${row.seq}` : `event ${range} is missing (deleted) before event #${row.seq}`,
        });
      }
      if (scheme === undefined) throw new Error('this database is not migrated to this version (audit events have no scheme): run "keysmith migrate" first');
      const expected = hasher.check(row, scheme);
      if (expected === undefined) {
        return fail({ seq: row.seq, kind: 'edited', message: `event #${row.seq} names an unknown hash scheme "${String(scheme).slice(0, 40)}": it was edited` });
      }
      if (keyedFrom !== undefined && scheme !== SCHEME_KEYED) {
        return fail({
          seq: row.seq,
          kind: 'unkeyed',
          message: `event #${row.seq} is not keyed, but the log is keyed from event #${keyedFrom}: it was written without the chain key`,
        });
      }
      if (expected !== hash) {
        const how = scheme === SCHEME_KEYED ? 'its keyed hash (HMAC)' : 'its own hash';
        return fail({ seq: row.seq, kind: 'edited', message: `event #${row.seq} does not match ${how}: it was edited or forged` });
      }
      if (row.prev_hash !== prevHash) {
        return fail({
          seq: row.seq,
          kind: 'reordered',
          message: `event #${row.seq} does not follow event #${row.seq - 1}: the chain was reordered or rewritten here`,
        });
      }
      if (keyedFrom === undefined && scheme === SCHEME_KEYED) {
        // The switch is a marker event under the key: a keyed event without one before it was not written by Keysmith.
        if (row.action !== KEYED_MARKER_ACTION) {
          return fail({ seq: row.seq, kind: 'rewritten', message: `event #${row.seq} is the first keyed event but not the ${KEYED_MARKER_ACTION} marker` });
        }
        keyedFrom = row.seq;
      }
      for (const entry of bySeq.get(row.seq) ?? []) {
        if (entry.checkpoint!.hash !== hash) {
          return fail({
            seq: row.seq,
            kind: 'rewritten',
            message: `event #${row.seq} is not the one ${named(entry)} signed at ${entry.checkpoint!.time}: the log was rewritten at or before #${row.seq}`,
            checkpoint: where(entry),
          });
        }
      }
      prevHash = hash;
      expectedSeq += 1;
      checked += 1;
    }
    after = Number(rows[rows.length - 1]!.seq);
    options.onProgress?.(checked, total);
  }
  const lastSeq = expectedSeq - 1;

  // The newest checkpoint the log does not reach: its end was cut off (or all of it).
  let beyond: CheckpointEntry | undefined;
  for (const entry of entries) if (entry.checkpoint!.seq > lastSeq && (!beyond || entry.checkpoint!.seq > beyond.checkpoint!.seq)) beyond = entry;
  if (beyond) {
    return fail({
      seq: lastSeq + 1,
      kind: 'truncated',
      message: `${lastSeq === 0 ? 'the log is empty' : `the log ends at event #${lastSeq}`}, but ${named(beyond)} signed event #${beyond.checkpoint!.seq} at ${beyond.checkpoint!.time}: events #${lastSeq + 1}…#${beyond.checkpoint!.seq} were deleted`,
      checkpoint: where(beyond),
    });
  }
  if (!headRow) return fail({ seq: lastSeq + 1, kind: 'missing-head', message: 'the audit_head row is missing: the log was tampered with (every database has one from its first migration)' });
  if (lastSeq === 0) {
    return fail({
      seq: 1,
      kind: 'empty',
      message: 'the log is empty: a keyed log always begins with its audit.chain.keyed event, so every event was deleted',
    });
  }
  if (lastSeq !== headSeq || headRow.hash !== prevHash) {
    if (lastSeq < headSeq) {
      return fail({ seq: lastSeq + 1, kind: 'truncated', message: `events #${lastSeq + 1}…#${headSeq} are missing: the end of the log was deleted` });
    }
    return fail({ seq: lastSeq, kind: 'edited', message: `the chain head does not match event #${lastSeq}` });
  }
  if (keyedFrom === undefined) {
    return fail({
      seq: 1,
      kind: 'unkeyed',
      message: `no event is keyed (the log has no ${KEYED_MARKER_ACTION} marker): it was rewritten with plain SHA-256, or no server of this version has run on it yet (start one once)`,
    });
  }
  return { ok: true, events: total, headSeq, checkpoints: entries.length, keyedFrom };
}
