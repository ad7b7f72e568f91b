/**
 * Reads and records the master key's check value, and tells an empty database from one with
 * data. Runs before migrations, so it asks whether tables exist instead of assuming them: the
 * one place that differs between SQLite and PostgreSQL.
 */
import { sql, type Kysely } from 'kysely';
import type { Store } from './create-db.js';
import type { StoreDialect } from './dialect.js';
import type { Database, MasterKeyCheckTable } from './schema.js';

export type RecordedKeyCheck = Pick<MasterKeyCheckTable, 'scheme' | 'check_value' | 'origin' | 'created_at'>;

export interface KeyCheckState {
  /** The recorded check value, if any. */
  readonly recorded: RecordedKeyCheck | undefined;
  /** Whether anything sealed or hashed with a master key may be in the database. */
  readonly hasData: boolean;
}

/**
 * Tables whose rows exist only once a master key was used: issued keys (hashed with it), secret
 * versions (sealed under it) and audit events (every change writes one).
 */
const DATA_TABLES = ['api_keys', 'secret_versions', 'audit_events'] as const;

export async function tableExists(db: Kysely<Database>, dialect: StoreDialect, name: string): Promise<boolean> {
  if (dialect.name === 'sqlite') {
    const { rows } = await sql<{ n: number }>`select count(*) as n from sqlite_master where type = 'table' and name = ${name}`.execute(db);
    return Number(rows[0]?.n ?? 0) > 0;
  }
  // to_regclass honours search_path, so a schema-scoped store looks only in its own schema.
  const { rows } = await sql<{ found: boolean }>`select to_regclass(${name}) is not null as found`.execute(db);
  return rows[0]?.found === true;
}

/** The recorded check value, or undefined when there is none (or no table for it yet). */
export async function readRecordedKeyCheck(store: Pick<Store, 'db' | 'dialect'>): Promise<RecordedKeyCheck | undefined> {
  if (!(await tableExists(store.db, store.dialect, 'master_key_check'))) return undefined;
  return store.db
    .selectFrom('master_key_check')
    .select(['scheme', 'check_value', 'origin', 'created_at'])
    .where('id', '=', 1)
    .executeTakeFirst();
}

export async function readKeyCheckState(store: Pick<Store, 'db' | 'dialect'>): Promise<KeyCheckState> {
  const { db, dialect } = store;
  const recorded = await readRecordedKeyCheck(store);
  let hasData = false;
  for (const table of DATA_TABLES) {
    if (!(await tableExists(db, dialect, table))) continue;
    const row = await db.selectFrom(table).select(sql<number>`1`.as('one')).limit(1).executeTakeFirst();
    if (row !== undefined) {
      hasData = true;
      break;
    }
  }
  return { recorded, hasData };
}

/**
 * Records a check value unless one is there already, and answers the one the database holds
 * afterwards: when two servers start on a new database at once, one wins and the other can see
 * that its key is not the database's.
 */
export async function recordKeyCheck(store: Pick<Store, 'db'>, check: RecordedKeyCheck): Promise<RecordedKeyCheck> {
  await store.db
    .insertInto('master_key_check')
    .values({ id: 1, ...check })
    .onConflict((oc) => oc.column('id').doNothing())
    .execute();
  const row = await store.db
    .selectFrom('master_key_check')
    .select(['scheme', 'check_value', 'origin', 'created_at'])
    .where('id', '=', 1)
    .executeTakeFirstOrThrow();
  return row;
}
