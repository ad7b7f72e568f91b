export { createAuditLog, deriveAuditKeys, type AuditLog, type AuditLogKeys } from './audit.js';
export {
  listAudit,
  hashEvent,
  GENESIS_HASH,
  type ActorContext,
  type AuditEvent,
  type AuditEventInput,
  type ListAuditOptions,
} from './audit-log.js';
export { SCHEME_KEYED, SCHEME_SHA256, KEYED_MARKER_ACTION } from './chain-hash.js';
export { type ChainVerification, type ChainProblem, type ChainProblemKind, type VerifyChainOptions } from './verify-chain.js';
export {
  formatCheckpoint,
  parseCheckpoint,
  parseCheckpoints,
  readCheckpointFile,
  type Checkpoint,
  type CheckpointEntry,
  type CheckpointPublicKey,
} from './checkpoints.js';
export { ChangeFeed } from './change-feed.js';
export { AuditTail, type AuditTailOptions, type CatchUpOptions, type Subscription, type TailEvent, type TailFilter, type TailListener } from './audit-tail.js';
export { AuditCheckpointer, CheckpointTooSoon, type CheckpointerDeps, type WrittenCheckpoint } from './checkpointer.js';
export { createFileSink, createCommandSink, createUrlSink, type CheckpointSink } from './checkpoint-sinks.js';
