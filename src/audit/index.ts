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
export { AuditTail, type AuditTailOptions, type CatchUpOptions, type Subscription, type TailEvent, type TailFilter, type TailListener } from './audit-tail.js';
