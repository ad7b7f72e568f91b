/**
 * Test stores on every dialect: a fresh SQLite file, and a fresh schema in the run's
 * PostgreSQL database. `describeEachDialect` runs a suite once per dialect, as Kysely's own
 * integration tests do.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { describe, inject } from 'vitest';
import { createStore, type DialectName as Dialect, type Store } from '../../src/store/index.js';

export const DIALECTS: readonly Dialect[] = ['sqlite', 'postgres'];

export function postgresUrl(): string {
  return inject('postgresUrl');
}

/** Runs the suite for each dialect; PostgreSQL only skips outside CI when no server is configured. */
export function describeEachDialect(name: string, suite: (dialect: Dialect) => void): void {
  for (const dialect of DIALECTS) {
    const skip = dialect === 'postgres' && postgresUrl() === '';
    (skip ? describe.skip : describe)(`${name} [${dialect}]`, () => suite(dialect));
  }
}

export interface TestStore {
  readonly store: Store;
  /** A temporary directory for this store (SQLite file lives here). */
  readonly dir: string;
  cleanup(): Promise<void>;
}

export async function createTestStore(dialect: Dialect): Promise<TestStore> {
  const dir = mkdtempSync(join(tmpdir(), 'keysmith-test-'));
  if (dialect === 'sqlite') {
    const store = createStore({ dialect: 'sqlite', file: join(dir, 'keysmith.db') });
    await store.migrate();
    return {
      store,
      dir,
      async cleanup() {
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  const url = postgresUrl();
  const schema = `s_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query(`create schema ${schema}`);
  await admin.end();
  const store = createStore({ dialect: 'postgres', url, schema });
  await store.migrate();
  return {
    store,
    dir,
    async cleanup() {
      await store.close();
      const drop = new pg.Client({ connectionString: url });
      await drop.connect();
      await drop.query(`drop schema if exists ${schema} cascade`);
      await drop.end();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
