/** Issued keys, their labels and usage, and the hash-chained audit log. */
import { sql, type Kysely, type Migration } from 'kysely';

export const keysAndAudit: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('api_keys')
      .addColumn('id', 'varchar(32)', (c) => c.primaryKey())
      .addColumn('kind', 'varchar(16)', (c) => c.notNull())
      .addColumn('prefix', 'varchar(16)', (c) => c.notNull())
      .addColumn('env', 'varchar(8)', (c) => c.notNull())
      .addColumn('hash_version', 'integer', (c) => c.notNull())
      .addColumn('key_hash', 'varchar(64)')
      .addColumn('owner', 'varchar(200)', (c) => c.notNull())
      .addColumn('purpose', 'varchar(500)', (c) => c.notNull())
      .addColumn('scopes', 'text', (c) => c.notNull())
      .addColumn('ip_allowlist', 'text')
      .addColumn('rate_limit_limit', 'integer')
      .addColumn('rate_limit_window_ms', 'bigint')
      .addColumn('expires_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('created_by', 'varchar(64)', (c) => c.notNull())
      .addColumn('updated_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('disabled_at', 'varchar(32)')
      .addColumn('revoked_at', 'varchar(32)')
      .addColumn('revoke_reason', 'varchar(500)')
      .addColumn('replaces', 'varchar(32)')
      .addColumn('replaced_by', 'varchar(32)')
      .addColumn('grace_ends_at', 'varchar(32)')
      .addColumn('retired_at', 'varchar(32)')
      .execute();
    await db.schema.createIndex('api_keys_owner_idx').on('api_keys').columns(['owner', 'created_at']).execute();
    await db.schema.createIndex('api_keys_created_idx').on('api_keys').columns(['created_at', 'id']).execute();
    await db.schema.createIndex('api_keys_expires_idx').on('api_keys').column('expires_at').execute();

    await db.schema
      .createTable('key_labels')
      .addColumn('key_id', 'varchar(32)', (c) => c.notNull().references('api_keys.id').onDelete('cascade'))
      .addColumn('name', 'varchar(64)', (c) => c.notNull())
      .addColumn('value', 'varchar(256)', (c) => c.notNull())
      .addPrimaryKeyConstraint('key_labels_pk', ['key_id', 'name'])
      .execute();
    await db.schema.createIndex('key_labels_name_value_idx').on('key_labels').columns(['name', 'value']).execute();

    await db.schema
      .createTable('key_usage')
      .addColumn('key_id', 'varchar(32)', (c) => c.notNull())
      .addColumn('minute', 'varchar(32)', (c) => c.notNull())
      .addColumn('outcome', 'varchar(32)', (c) => c.notNull())
      .addColumn('count', 'integer', (c) => c.notNull())
      .addPrimaryKeyConstraint('key_usage_pk', ['key_id', 'minute', 'outcome'])
      .execute();

    // Last use lives apart from the key row: usage flushes upsert many rows per statement and
    // never take a lock on api_keys (which rotations lock on PostgreSQL).
    await db.schema
      .createTable('key_last_use')
      .addColumn('key_id', 'varchar(32)', (c) => c.primaryKey())
      .addColumn('used_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('ip', 'varchar(64)')
      .addColumn('user_agent', 'varchar(200)')
      .execute();
    await db.schema.createIndex('key_last_use_used_idx').on('key_last_use').column('used_at').execute();

    await db.schema
      .createTable('audit_events')
      .addColumn('seq', 'integer', (c) => c.primaryKey())
      .addColumn('time', 'varchar(32)', (c) => c.notNull())
      .addColumn('actor', 'varchar(64)', (c) => c.notNull())
      .addColumn('action', 'varchar(64)', (c) => c.notNull())
      .addColumn('target', 'varchar(200)')
      .addColumn('request_id', 'varchar(64)')
      .addColumn('source_ip', 'varchar(64)')
      .addColumn('data', 'text', (c) => c.notNull())
      .addColumn('prev_hash', 'varchar(64)', (c) => c.notNull())
      .addColumn('hash', 'varchar(64)', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('audit_events_target_idx').on('audit_events').columns(['target', 'seq']).execute();

    await db.schema
      .createTable('audit_head')
      .addColumn('id', 'integer', (c) => c.primaryKey())
      .addColumn('seq', 'integer', (c) => c.notNull())
      .addColumn('hash', 'varchar(64)', (c) => c.notNull())
      .execute();
    await sql`insert into audit_head (id, seq, hash) values (1, 0, ${'0'.repeat(64)})`.execute(db);
  },
  async down(db: Kysely<any>) {
    for (const table of ['audit_head', 'audit_events', 'key_last_use', 'key_usage', 'key_labels', 'api_keys']) {
      await db.schema.dropTable(table).execute();
    }
  },
};
