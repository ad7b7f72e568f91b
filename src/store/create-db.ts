/**
 * Opens the store: SQLite (better-sqlite3, WAL, synchronous=FULL so an acknowledged write
 * survives a crash) by default, or PostgreSQL through `pg` for several nodes.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import { dialectNamed, type StoreDialect } from './dialect.js';
import { migrationProvider } from './migrations/index.js';
import type { Database } from './schema.js';


export type StoreOptions =
  | { readonly dialect: 'sqlite'; readonly file: string }
  | { readonly dialect: 'postgres'; readonly url: string; readonly schema?: string; readonly poolSize?: number };

export interface Store {
  readonly db: Kysely<Database>;
  /** What differs between the databases: ask it, never branch on the name. */
  readonly dialect: StoreDialect;
  /** A short, password-free description for logs. */
  readonly description: string;
  migrate(): Promise<string[]>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

export function isPostgresUrl(text: string): boolean {
  return /^postgres(ql)?:\/\//.test(text);
}

export function createStore(options: StoreOptions): Store {
  const { db, description } = options.dialect === 'sqlite' ? openSqlite(options.file) : openPostgres(options);
  return {
    db,
    dialect: dialectNamed(options.dialect),
    description,
    migrate: () => migrateToLatest(db, options.dialect === 'postgres' ? options.schema : undefined),
    async ping() {
      await db.selectFrom('audit_head').select('seq').limit(1).execute();
    },
    close: () => db.destroy(),
  };
}

function openSqlite(file: string): { db: Kysely<Database>; description: string } {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  // SQLite gives its -wal and -shm files the mode of the database file, so creating that file
  // 0600 here (whatever the umask) keeps all three private.
  if (!existsSync(file)) {
    try {
      closeSync(openSync(file, 'wx', 0o600));
      chmodSync(file, 0o600);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  const database = new SqliteDatabase(file);
  database.pragma('journal_mode = WAL');
  database.pragma('synchronous = FULL');
  database.pragma('busy_timeout = 5000');
  database.pragma('foreign_keys = ON');
  return { db: new Kysely<Database>({ dialect: new SqliteDialect({ database }) }), description: `sqlite:${file}` };
}

function openPostgres(options: { url: string; schema?: string; poolSize?: number }): { db: Kysely<Database>; description: string } {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize ?? 10,
    ...(options.schema ? { options: `-c search_path=${options.schema}` } : {}),
  });
  // An idle client that errors (server restart) must not crash the process.
  pool.on('error', () => undefined);
  const url = new URL(options.url);
  url.password = '';
  return {
    db: new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }),
    description: `postgres://${url.host}${url.pathname}${options.schema ? `#${options.schema}` : ''}`,
  };
}

async function migrateToLatest(db: Kysely<Database>, schema: string | undefined): Promise<string[]> {
  // With a schema, Kysely must look for its own tables there, not in any schema it can see.
  const migrator = new Migrator({ db, provider: migrationProvider, ...(schema ? { migrationTableSchema: schema } : {}) });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw error instanceof Error ? error : new Error(String(error));
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
