/**
 * Rotation runs: the durable state machine (one row per run, one row per step it took), the
 * revocations it owes (retried until done, across restarts), named leases that let one server of
 * many do a chore, and the vendor id a vault version was issued under.
 */
import type { Kysely, Migration } from 'kysely';

export const rotationRuns: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('rotation_runs')
      .addColumn('id', 'varchar(32)', (c) => c.primaryKey())
      .addColumn('policy', 'varchar(64)')
      .addColumn('policy_version', 'integer')
      .addColumn('spec', 'text', (c) => c.notNull())
      .addColumn('target_kind', 'varchar(8)', (c) => c.notNull())
      .addColumn('target', 'varchar(256)', (c) => c.notNull())
      .addColumn('trigger', 'varchar(16)', (c) => c.notNull())
      .addColumn('reason', 'varchar(500)')
      .addColumn('scheduled_for', 'varchar(32)')
      .addColumn('status', 'varchar(16)', (c) => c.notNull())
      .addColumn('step', 'varchar(16)', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('attempts', 'integer', (c) => c.notNull())
      .addColumn('next_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('lease_owner', 'varchar(64)')
      .addColumn('lease_until', 'varchar(32)')
      // `kind:target` while the run is running, null after: the unique index allows one running run per target.
      .addColumn('active_target', 'varchar(270)')
      .addColumn('error', 'varchar(1000)')
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('created_by', 'varchar(64)', (c) => c.notNull())
      .addColumn('updated_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('promoted_at', 'varchar(32)')
      .addColumn('finished_at', 'varchar(32)')
      .execute();
    await db.schema.createIndex('rotation_runs_active_idx').on('rotation_runs').column('active_target').unique().execute();
    // A scheduled firing of a policy for a target starts exactly once, whichever server sees it first.
    await db.schema.createIndex('rotation_runs_schedule_idx').on('rotation_runs').columns(['policy', 'target', 'scheduled_for']).unique().execute();
    await db.schema.createIndex('rotation_runs_due_idx').on('rotation_runs').columns(['status', 'next_at']).execute();
    await db.schema.createIndex('rotation_runs_created_idx').on('rotation_runs').columns(['created_at', 'id']).execute();
    await db.schema.createIndex('rotation_runs_target_idx').on('rotation_runs').columns(['target', 'created_at']).execute();

    await db.schema
      .createTable('rotation_run_steps')
      .addColumn('run_id', 'varchar(32)', (c) => c.notNull().references('rotation_runs.id').onDelete('cascade'))
      .addColumn('seq', 'integer', (c) => c.notNull())
      .addColumn('step', 'varchar(16)', (c) => c.notNull())
      .addColumn('outcome', 'varchar(16)', (c) => c.notNull())
      .addColumn('started_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('finished_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('evidence', 'text', (c) => c.notNull())
      .addColumn('error', 'varchar(1000)')
      .addPrimaryKeyConstraint('rotation_run_steps_pk', ['run_id', 'seq'])
      .execute();

    await db.schema
      .createTable('rotation_revocations')
      .addColumn('id', 'varchar(40)', (c) => c.primaryKey())
      .addColumn('run_id', 'varchar(32)', (c) => c.notNull().references('rotation_runs.id').onDelete('cascade'))
      .addColumn('which', 'varchar(8)', (c) => c.notNull())
      .addColumn('credential', 'text', (c) => c.notNull())
      .addColumn('status', 'varchar(16)', (c) => c.notNull())
      .addColumn('not_before', 'varchar(32)', (c) => c.notNull())
      .addColumn('next_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('attempts', 'integer', (c) => c.notNull())
      .addColumn('last_error', 'varchar(1000)')
      .addColumn('lease_owner', 'varchar(64)')
      .addColumn('lease_until', 'varchar(32)')
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('done_at', 'varchar(32)')
      .execute();
    await db.schema.createIndex('rotation_revocations_due_idx').on('rotation_revocations').columns(['status', 'next_at']).execute();

    await db.schema
      .createTable('leases')
      .addColumn('name', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('owner', 'varchar(64)', (c) => c.notNull())
      .addColumn('expires_at', 'varchar(32)', (c) => c.notNull())
      .execute();

    await db.schema.alterTable('secret_versions').addColumn('vendor_id', 'varchar(200)').execute();
  },
  async down(db: Kysely<any>) {
    await db.schema.alterTable('secret_versions').dropColumn('vendor_id').execute();
    await db.schema.dropTable('leases').execute();
    await db.schema.dropTable('rotation_revocations').execute();
    await db.schema.dropTable('rotation_run_steps').execute();
    await db.schema.dropTable('rotation_runs').execute();
  },
};
