/**
 * The audit log as one object, made once in the composition root with keys derived from the
 * master key (never stored in the database): the chain key every event's HMAC is made with, and
 * the Ed25519 key that signs checkpoints. Services append through it; the server and the CLI
 * verify and checkpoint through it. No module-level state, so two logs under two keys never mix.
 */
import type { Kysely, Transaction } from 'kysely';
import { deriveSecret } from '../crypto/index.js';
import type { Database } from '../store/index.js';
import { AppError } from '../shared/errors.js';
import { appendAudit, appendAuditBatch, keyChain, type ActorContext, type AuditEvent, type AuditEventInput, type Executor } from './audit-log.js';
import { createChainHasher } from './chain-hash.js';
import { createCheckpointKey, type Checkpoint, type CheckpointPublicKey } from './checkpoints.js';
import { verifyChain, type ChainVerification, type VerifyChainOptions } from './verify-chain.js';

export interface AuditLog {
  /** Appends one event inside the caller's transaction. */
  append(trx: Transaction<Database>, context: ActorContext, event: AuditEventInput, time: string): Promise<AuditEvent>;
  /** Appends many events with one bump of the head; the sequence number of the last, or undefined for none. */
  appendBatch(trx: Transaction<Database>, context: ActorContext, events: readonly AuditEventInput[], time: string): Promise<number | undefined>;
  /** One event in a transaction of its own (failed authentication, denied calls). */
  record(db: Kysely<Database>, context: ActorContext, event: AuditEventInput, time: string): Promise<AuditEvent>;
  /** Writes the `audit.chain.keyed` marker if the chain is not keyed yet; at startup. */
  keyChain(db: Kysely<Database>, time: string): Promise<boolean>;
  /** Walks the whole chain (and the checkpoints given) and names the first thing wrong. */
  verify(db: Executor, options?: VerifyChainOptions): Promise<ChainVerification>;
  /**
   * Signs the head as it is committed: its seq and the hash of the event stored there (which
   * must be the head's hash). Undefined for a log with no event yet.
   */
  checkpoint(db: Executor, time: string): Promise<Checkpoint | undefined>;
  /** The checkpoint verification key (printed by `keysmith audit key`). */
  readonly publicKey: CheckpointPublicKey;
}

export interface AuditLogKeys {
  /** 32 bytes derived from the master key (`deriveSecret(masterKey, 'audit-chain:v1')`). */
  readonly chainKey: Uint8Array;
  /** 32 bytes derived from the master key (`deriveSecret(masterKey, 'audit-checkpoint:v1')`): the Ed25519 seed. */
  readonly checkpointSeed: Uint8Array;
}

/** Both audit keys from the master key. */
export function deriveAuditKeys(masterKey: Uint8Array): AuditLogKeys {
  return { chainKey: deriveSecret(masterKey, 'audit-chain:v1'), checkpointSeed: deriveSecret(masterKey, 'audit-checkpoint:v1') };
}

export function createAuditLog(keys: AuditLogKeys): AuditLog {
  const hasher = createChainHasher(keys.chainKey);
  const signer = createCheckpointKey(keys.checkpointSeed);
  return {
    append: (trx, context, event, time) => appendAudit(hasher, trx, context, event, time),
    appendBatch: (trx, context, events, time) => appendAuditBatch(hasher, trx, context, events, time),
    record: (db, context, event, time) => db.transaction().execute((trx) => appendAudit(hasher, trx, context, event, time)),
    keyChain: (db, time) => keyChain(hasher, db, time),
    verify: (db, options) => verifyChain(hasher, signer, db, options),
    async checkpoint(db, time) {
      const head = await db.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 1).executeTakeFirst();
      if (!head) throw new AppError('ERR_AUDIT_CHECKPOINT_REFUSED', 'the audit_head row is missing: the log was tampered with; run "keysmith audit verify"');
      const seq = Number(head.seq);
      if (seq === 0) return undefined;
      const event = await db.selectFrom('audit_events').select(['hash', 'scheme']).where('seq', '=', seq).executeTakeFirst();
      // A head that names no stored event, or another hash, is not signed: that would bless a tampered log.
      if (!event || event.hash !== head.hash) throw new AppError('ERR_AUDIT_CHECKPOINT_REFUSED', `the audit head (#${seq}) does not match the stored event; run "keysmith audit verify"`);
      return signer.sign(seq, head.hash, time);
    },
    publicKey: signer.publicKey,
  };
}
