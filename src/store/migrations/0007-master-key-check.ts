/**
 * The master key's check value: one row, written when a server first starts on the database with
 * a master key, so a server given no key or another key refuses to start instead of making one.
 */
import type { Kysely, Migration } from 'kysely';

export const masterKeyCheck: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('master_key_check')
      // Always 1: a database has one master key.
      .addColumn('id', 'integer', (c) => c.primaryKey())
      .addColumn('scheme', 'varchar(32)', (c) => c.notNull())
      .addColumn('check_value', 'varchar(128)', (c) => c.notNull())
      // 'new' (recorded on an empty database), 'verified' (an older database whose data the key
      // opened) or 'unverified' (an older database with nothing the key could be tried on).
      .addColumn('origin', 'varchar(16)', (c) => c.notNull())
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .execute();
  },
  async down(db: Kysely<any>) {
    await db.schema.dropTable('master_key_check').execute();
  },
};
