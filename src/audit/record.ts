/** Standalone audit events (failed authentication, denied calls) in a transaction of their own. */
import type { Kysely } from 'kysely';
import type { Database } from '../store/index.js';
import { appendAudit, type ActorContext, type AuditEvent, type AuditEventInput } from './audit-log.js';

export async function recordAuditEvent(
  db: Kysely<Database>,
  context: ActorContext,
  event: AuditEventInput,
  time: string,
): Promise<AuditEvent> {
  return db.transaction().execute((trx) => appendAudit(trx, context, event, time));
}
