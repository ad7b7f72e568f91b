export {
  appendAudit,
  appendAuditBatch,
  listAudit,
  verifyChain,
  hashEvent,
  GENESIS_HASH,
  type ActorContext,
  type AuditEvent,
  type AuditEventInput,
  type ListAuditOptions,
  type ChainVerification,
  type ChainProblem,
  type VerifyChainOptions,
} from './audit-log.js';
export { recordAuditEvent } from './record.js';
export { ChangeFeed } from './change-feed.js';
