/** The secret vault: secrets, their sealed versions, stage labels, read counts and KEK versions. */
import type { Kysely, Migration } from 'kysely';

export const secretsVault: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('secrets')
      .addColumn('id', 'varchar(32)', (c) => c.primaryKey())
      .addColumn('path', 'varchar(256)', (c) => c.notNull().unique())
      .addColumn('owner', 'varchar(200)', (c) => c.notNull())
      .addColumn('description', 'varchar(1000)', (c) => c.notNull())
      .addColumn('labels', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'varchar(32)')
      .addColumn('max_versions', 'integer', (c) => c.notNull())
      .addColumn('latest_version', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('created_by', 'varchar(64)', (c) => c.notNull())
      .addColumn('updated_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('deleted_at', 'varchar(32)')
      .addColumn('deletion_date', 'varchar(32)')
      .execute();
    await db.schema.createIndex('secrets_deletion_idx').on('secrets').column('deletion_date').execute();

    await db.schema
      .createTable('secret_versions')
      .addColumn('secret_id', 'varchar(32)', (c) => c.notNull().references('secrets.id').onDelete('cascade'))
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('value_type', 'varchar(8)', (c) => c.notNull())
      .addColumn('envelope_format', 'integer', (c) => c.notNull())
      .addColumn('alg', 'varchar(16)', (c) => c.notNull())
      .addColumn('kek_id', 'varchar(100)', (c) => c.notNull())
      .addColumn('kek_version', 'integer', (c) => c.notNull())
      // Base64 text, so one schema serves both dialects; both are null once destroyed.
      .addColumn('wrapped_key', 'text')
      .addColumn('sealed', 'text')
      .addColumn('request_token', 'varchar(64)')
      .addColumn('value_digest', 'varchar(64)')
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('created_by', 'varchar(64)', (c) => c.notNull())
      .addColumn('destroyed_at', 'varchar(32)')
      .addPrimaryKeyConstraint('secret_versions_pk', ['secret_id', 'version'])
      .execute();
    await db.schema.createIndex('secret_versions_kek_idx').on('secret_versions').columns(['kek_id', 'kek_version']).execute();
    await db.schema
      .createIndex('secret_versions_token_idx')
      .on('secret_versions')
      .columns(['secret_id', 'request_token'])
      .unique()
      .execute();

    await db.schema
      .createTable('secret_stages')
      .addColumn('secret_id', 'varchar(32)', (c) => c.notNull().references('secrets.id').onDelete('cascade'))
      .addColumn('stage', 'varchar(32)', (c) => c.notNull())
      .addColumn('version', 'integer', (c) => c.notNull())
      .addPrimaryKeyConstraint('secret_stages_pk', ['secret_id', 'stage'])
      .execute();

    await db.schema
      .createTable('secret_reads')
      .addColumn('secret_id', 'varchar(32)', (c) => c.notNull())
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('principal', 'varchar(64)', (c) => c.notNull())
      .addColumn('minute', 'varchar(32)', (c) => c.notNull())
      .addColumn('count', 'integer', (c) => c.notNull())
      .addColumn('last_read_at', 'varchar(32)', (c) => c.notNull())
      .addPrimaryKeyConstraint('secret_reads_pk', ['secret_id', 'version', 'principal', 'minute'])
      .execute();

    await db.schema
      .createTable('kek_versions')
      .addColumn('provider', 'varchar(100)', (c) => c.notNull())
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('state', 'varchar(16)', (c) => c.notNull())
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('retired_at', 'varchar(32)')
      .addPrimaryKeyConstraint('kek_versions_pk', ['provider', 'version'])
      .execute();
  },
  async down(db: Kysely<any>) {
    for (const table of ['kek_versions', 'secret_reads', 'secret_stages', 'secret_versions', 'secrets']) {
      await db.schema.dropTable(table).execute();
    }
  },
};
