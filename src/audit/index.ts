export { createAuditLog, type AuditLog, type AuditLogOptions } from './audit.js';
export {
  listAudit,
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
export { ChangeFeed } from './change-feed.js';
export { AuditTail, type AuditTailOptions, type CatchUpOptions, type Subscription, type TailEvent, type TailFilter, type TailListener } from './audit-tail.js';
