/**
 * Real database failures for tests: a trigger that aborts an UPDATE of the rows a condition
 * picks, on SQLite (`RAISE(ABORT)`) and PostgreSQL (a trigger function that raises). The
 * statement fails inside the caller's transaction exactly as a constraint or I/O error would,
 * so what rolls back is decided by the database, not by a mock.
 */
import { sql, type Kysely } from 'kysely';
import type { Database, DialectName as Dialect } from '../../src/store/index.js';

/** The message the injected failure carries, so a test can tell it from any other error. */
export const INJECTED_FAULT = 'injected fault';

export interface UpdateFault {
  /** Drops the trigger: the fault is cleared. */
  remove(): Promise<void>;
}

/**
 * Makes every UPDATE of `table` whose row matches `when` fail. `when` is SQL over `OLD` and
 * `NEW` that both dialects read (e.g. `OLD.id = 'key_x' AND NEW.revoked_at IS NOT NULL`);
 * `name` must be a plain identifier, unique in the database.
 */
export async function failUpdatesOf(db: Kysely<Database>, dialect: Dialect, table: keyof Database, when: string, name: string): Promise<UpdateFault> {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a plain identifier: ${name}`);
  if (dialect === 'sqlite') {
    await sql
      .raw(`CREATE TRIGGER ${name} BEFORE UPDATE ON ${table} FOR EACH ROW WHEN ${when} BEGIN SELECT RAISE(ABORT, '${INJECTED_FAULT}'); END`)
      .execute(db);
    return { remove: async () => void (await sql.raw(`DROP TRIGGER IF EXISTS ${name}`).execute(db)) };
  }
  // Unqualified names land in the test store's schema (its connections' search_path).
  await sql.raw(`CREATE FUNCTION ${name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '${INJECTED_FAULT}'; END $$`).execute(db);
  await sql.raw(`CREATE TRIGGER ${name} BEFORE UPDATE ON ${table} FOR EACH ROW WHEN (${when}) EXECUTE FUNCTION ${name}()`).execute(db);
  return {
    remove: async () => {
      await sql.raw(`DROP TRIGGER IF EXISTS ${name} ON ${table}`).execute(db);
      await sql.raw(`DROP FUNCTION IF EXISTS ${name}()`).execute(db);
    },
  };
}

/** A SQL string literal (for the `when` of a fault). */
export function literal(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}
