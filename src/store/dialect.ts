/**
 * What differs between the databases, as a few small methods (kysely's own dialects work the
 * same way): domain code asks the store's dialect and never branches on a database's name.
 *
 * SQLite has one writer at a time and a transaction holds the database's write lock from its
 * first write, so a row lock is unnecessary there (and SQLite has no `FOR UPDATE`). PostgreSQL
 * runs writers side by side, so a read-then-write must lock the row it read.
 */
import type { SelectQueryBuilder } from 'kysely';

export type DialectName = 'sqlite' | 'postgres';

export interface StoreDialect {
  readonly name: DialectName;
  /**
   * True when the database has one writer at a time: many small writes belong in one
   * transaction there, while a database with concurrent writers takes them apart.
   */
  readonly singleWriter: boolean;
  /** Most bound parameters one statement may carry. */
  readonly maxParams: number;
  /** Locks the rows a select reads until the transaction ends, against concurrent writers. */
  lockForUpdate<DB, TB extends keyof DB, O>(query: SelectQueryBuilder<DB, TB, O>): SelectQueryBuilder<DB, TB, O>;
  /** Holds the rows a select reads against writers (not readers) until the transaction ends. */
  lockForShare<DB, TB extends keyof DB, O>(query: SelectQueryBuilder<DB, TB, O>): SelectQueryBuilder<DB, TB, O>;
  /** Splits rows into batches whose statements stay under `maxParams` at `columns` parameters a row. */
  chunk<T>(rows: readonly T[], columns: number): T[][];
}

// better-sqlite3 builds SQLite with SQLITE_MAX_VARIABLE_NUMBER at its default of 32,766;
// PostgreSQL's wire protocol counts parameters in 16 bits.
const SQLITE_MAX_PARAMS = 32_766;
const POSTGRES_MAX_PARAMS = 65_535;

export const sqliteDialect: StoreDialect = {
  name: 'sqlite',
  singleWriter: true,
  maxParams: SQLITE_MAX_PARAMS,
  lockForUpdate: (query) => query,
  lockForShare: (query) => query,
  chunk: (rows, columns) => chunkRows(rows, columns, SQLITE_MAX_PARAMS),
};

export const postgresDialect: StoreDialect = {
  name: 'postgres',
  singleWriter: false,
  maxParams: POSTGRES_MAX_PARAMS,
  lockForUpdate: (query) => query.forUpdate(),
  lockForShare: (query) => query.forShare(),
  chunk: (rows, columns) => chunkRows(rows, columns, POSTGRES_MAX_PARAMS),
};

export function dialectNamed(name: DialectName): StoreDialect {
  return name === 'sqlite' ? sqliteDialect : postgresDialect;
}

function chunkRows<T>(rows: readonly T[], columns: number, maxParams: number): T[][] {
  if (!Number.isInteger(columns) || columns < 1 || columns > maxParams) throw new RangeError(`a row of ${columns} parameters cannot be batched`);
  const size = Math.floor(maxParams / columns);
  const out: T[][] = [];
  for (let start = 0; start < rows.length; start += size) out.push(rows.slice(start, start + size));
  return out;
}
