/** Break-glass incidents: one row per mass revocation or rotation, what it selected and how it ended. */
import type { Kysely, Migration } from 'kysely';

export const incidents: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('incidents')
      .addColumn('id', 'varchar(32)', (c) => c.primaryKey())
      .addColumn('action', 'varchar(16)', (c) => c.notNull())
      .addColumn('selector', 'text', (c) => c.notNull())
      .addColumn('reason', 'varchar(500)', (c) => c.notNull())
      .addColumn('status', 'varchar(16)', (c) => c.notNull())
      .addColumn('key_count', 'integer', (c) => c.notNull())
      .addColumn('planned_count', 'integer', (c) => c.notNull())
      .addColumn('overlap', 'varchar(16)')
      .addColumn('started_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('finished_at', 'varchar(32)')
      .addColumn('created_by', 'varchar(64)', (c) => c.notNull())
      .addColumn('failure', 'varchar(500)')
      // Bumped by every committed batch: a running incident that stops moving was interrupted.
      .addColumn('updated_at', 'varchar(32)', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('incidents_status_idx').on('incidents').columns(['status', 'updated_at']).execute();
    await db.schema.createIndex('incidents_started_idx').on('incidents').columns(['started_at', 'id']).execute();
  },
  async down(db: Kysely<any>) {
    await db.schema.dropTable('incidents').execute();
  },
};
