/** Rotation policies as code: one row per named policy, its normalised spec as JSON text. */
import type { Kysely, Migration } from 'kysely';

export const rotationPolicies: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('rotation_policies')
      .addColumn('name', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('spec', 'text', (c) => c.notNull())
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('created_by', 'varchar(64)', (c) => c.notNull())
      .addColumn('updated_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('updated_by', 'varchar(64)', (c) => c.notNull())
      .execute();
  },
  async down(db: Kysely<any>) {
    await db.schema.dropTable('rotation_policies').execute();
  },
};
