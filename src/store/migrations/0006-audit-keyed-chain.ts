/**
 * The keyed audit chain: every event records the scheme its hash was made with, so the events
 * written before the switch (plain SHA-256) keep verifying, and the head records the scheme it
 * is at, so the first append after the upgrade writes the `audit.chain.keyed` marker.
 */
import type { Kysely, Migration } from 'kysely';

export const auditKeyedChain: Migration = {
  async up(db: Kysely<any>) {
    await db.schema.alterTable('audit_events').addColumn('scheme', 'varchar(32)', (c) => c.notNull().defaultTo('sha256')).execute();
    await db.schema.alterTable('audit_head').addColumn('scheme', 'varchar(32)', (c) => c.notNull().defaultTo('sha256')).execute();
  },
  async down(db: Kysely<any>) {
    await db.schema.alterTable('audit_head').dropColumn('scheme').execute();
    await db.schema.alterTable('audit_events').dropColumn('scheme').execute();
  },
};
