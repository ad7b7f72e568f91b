/**
 * The audit log as one object, made once in the composition root with the chain key (derived
 * from the master key, never stored in the database): services append through it, the server
 * and the CLI verify through it. No module-level state, so two logs under two keys never mix.
 */
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../store/index.js';
import {
  appendAudit,
  appendAuditBatch,
  hashEvent,
  verifyChain,
  type ActorContext,
  type AuditEvent,
  type AuditEventInput,
  type ChainHasher,
  type ChainVerification,
  type Executor,
  type VerifyChainOptions,
} from './audit-log.js';

export interface AuditLog {
  /** Appends one event inside the caller's transaction. */
  append(trx: Transaction<Database>, context: ActorContext, event: AuditEventInput, time: string): Promise<AuditEvent>;
  /** Appends many events with one bump of the head; the sequence number of the last, or undefined for none. */
  appendBatch(trx: Transaction<Database>, context: ActorContext, events: readonly AuditEventInput[], time: string): Promise<number | undefined>;
  /** One event in a transaction of its own (failed authentication, denied calls). */
  record(db: Kysely<Database>, context: ActorContext, event: AuditEventInput, time: string): Promise<AuditEvent>;
  /** Walks the whole chain and names the first broken event. */
  verify(db: Executor, options?: VerifyChainOptions): Promise<ChainVerification>;
}

export interface AuditLogOptions {
  /** 32 bytes derived from the master key (`deriveSecret(masterKey, 'audit-chain:v1')`). */
  readonly chainKey: Uint8Array;
}

export function createAuditLog(options: AuditLogOptions): AuditLog {
  if (options.chainKey.length < 32) throw new Error('the audit chain key must hold at least 32 bytes');
  const hasher: ChainHasher = { hash: hashEvent };
  return {
    append: (trx, context, event, time) => appendAudit(hasher, trx, context, event, time),
    appendBatch: (trx, context, events, time) => appendAuditBatch(hasher, trx, context, events, time),
    record: (db, context, event, time) => db.transaction().execute((trx) => appendAudit(hasher, trx, context, event, time)),
    verify: (db, verifyOptions) => verifyChain(hasher, db, verifyOptions),
  };
}
