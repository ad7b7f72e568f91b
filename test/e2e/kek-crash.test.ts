/**
 * `kill -9` in the middle of a KEK re-wrap, on the built server, both databases. The test
 * holds the job inside its batch transaction (PostgreSQL: a row lock the test holds on the
 * Nth data key; SQLite: a trigger on the Nth row that keeps the single writer busy), waits
 * until the server is provably there, and kills it. The batch must leave no trace, and the
 * restarted server must finish the job by itself, after which the old version retires and
 * every value still reads.
 */
import { join } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, ensureBuilt, freshDatabase, makeTempDir, removeTempDirs, startServer, stopAll, waitFor } from './support.js';

const SECRETS = 20;
const VERSIONS = 2;
/** The row the job is held at (1-based, in the job's order): rows before it are updated in the open transaction. */
const NTH = 25;

beforeAll(() => {
  ensureBuilt();
});

afterAll(async () => {
  await stopAll();
  removeTempDirs();
});

interface Row {
  secret_id: string;
  version: number;
  kek_version: number;
  wrapped_key: string;
  sealed: string;
}
const ROWS_SQL = 'select secret_id, version, kek_version, wrapped_key, sealed from secret_versions order by secret_id, version';

/** The test's own connection to the server's database, and the way it holds the job at the Nth row. */
interface Holder {
  rows(): Promise<Row[]>;
  /** Arranges for the job's UPDATE of `row` to block; resolves once set up. */
  hold(row: Row): Promise<void>;
  /** Resolves once the server is inside the batch transaction, blocked at the held row. */
  waitUntilHeld(): Promise<void>;
  /** Lets go (after the kill) and waits until the killed server's transaction is gone. */
  release(): Promise<void>;
  close(): Promise<void>;
}

function sqliteHolder(file: string): Holder {
  const db = new SqliteDatabase(file);
  // The test never waits for the lock: SQLITE_BUSY is the answer it is looking for.
  db.pragma('busy_timeout = 0');
  return {
    rows: async () => db.prepare(ROWS_SQL).all() as Row[],
    async hold(row) {
      db.exec('create table crash_spin (x integer)');
      const insert = db.prepare('insert into crash_spin values (?)');
      db.transaction(() => {
        for (let i = 0; i < 2000; i++) insert.run(i);
      })();
      // SQLite triggers cannot sleep; a 2000³-row count keeps the writer busy for minutes.
      db.prepare(
        `create trigger crash_hold before update on secret_versions for each row
           when OLD.secret_id = ? and OLD.version = ? and NEW.kek_version <> OLD.kek_version
           begin select raise(abort, 'unreachable') where (select count(*) from crash_spin a, crash_spin b, crash_spin c where a.x + b.x + c.x < 0) > 0; end`
          .replace('?', `'${row.secret_id}'`)
          .replace('?', String(row.version)),
      ).run();
    },
    async waitUntilHeld() {
      // The write lock busy on several polls in a row: a short write (a usage flush, say) holds it
      // for a moment, the batch stuck in the trigger for minutes. Nothing else writes for long.
      let streak = 0;
      await waitFor(
        'the re-wrap batch to hold the write lock',
        async () => {
          try {
            db.exec('begin immediate');
            db.exec('rollback');
            streak = 0;
          } catch (error) {
            if ((error as { code?: string }).code !== 'SQLITE_BUSY') throw error;
            streak += 1;
          }
          return streak;
        },
        (busyPolls) => busyPolls >= 5,
      );
    },
    async release() {
      // The killed process's locks went with it; its uncommitted WAL frames are ignored on recovery.
      db.exec('drop trigger crash_hold');
      db.exec('drop table crash_spin');
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    },
    close: async () => void db.close(),
  };
}

function postgresHolder(url: string): Holder {
  const test = new pg.Client({ connectionString: url });
  const connected = test.connect();
  return {
    async rows() {
      await connected;
      return (await test.query(ROWS_SQL)).rows.map((r) => ({ ...r, version: Number(r.version), kek_version: Number(r.kek_version) })) as Row[];
    },
    async hold(row) {
      await connected;
      await test.query('begin');
      await test.query('select 1 from secret_versions where secret_id = $1 and version = $2 for update', [row.secret_id, row.version]);
    },
    async waitUntilHeld() {
      // Another backend waiting for the row lock this test holds, on the re-wrap's UPDATE.
      const probe = new pg.Client({ connectionString: url });
      await probe.connect();
      try {
        await waitFor(
          'the re-wrap UPDATE to wait for the held row',
          async () =>
            (await probe.query(`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query ilike 'update "secret_versions"%'`)).rows[0].n as number,
          (n) => n === 1,
        );
      } finally {
        await probe.end();
      }
    },
    async release() {
      await test.query('rollback');
      // The killed server's backend takes the row, finds its client gone and rolls back.
      await waitFor(
        "the killed server's backends to end",
        async () => (await test.query(`select count(*)::int as n from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`)).rows[0].n as number,
        (n) => n === 0,
      );
    },
    close: () => test.end(),
  };
}

describe.each(['sqlite', 'postgres'] as const)('kill -9 during a KEK re-wrap [%s]', { timeout: 120_000 }, (dialect) => {
  it('leaves the batch in flight without a trace; the restarted server finishes the re-wrap and retire works', async () => {
    const dataDir = join(makeTempDir('kek-crash'), 'data');
    const database = dialect === 'postgres' ? await freshDatabase() : undefined;
    const args = database ? ['--database', database.url] : [];
    let holder: Holder | undefined;
    try {
      let server = await startServer(dataDir, args);
      for (let s = 0; s < SECRETS; s++) {
        for (let v = 1; v <= VERSIONS; v++) expect((await api(server, 'PUT', `/v1/secrets/crash/s-${s}`, { value: `value-${s}-${v}` })).status).toBe(201);
      }
      holder = database ? postgresHolder(database.url) : sqliteHolder(join(dataDir, 'keysmith.db'));
      const before = await holder.rows();
      expect(before).toHaveLength(SECRETS * VERSIONS);
      expect(before.every((row) => Number(row.kek_version) === 1)).toBe(true);
      await holder.hold(before[NTH - 1]!);

      const rotated = await api(server, 'POST', '/v1/kek/rotate');
      expect(rotated.status, JSON.stringify(rotated.body)).toBe(201);
      expect(rotated.body).toMatchObject({ currentVersion: 2 });
      await holder.waitUntilHeld();
      expect((await server.crash()).signal).toBe('SIGKILL');
      await holder.release();

      // The batch (all the data keys: one batch of the default size) committed nothing.
      expect(await holder.rows()).toEqual(before);

      server = await startServer(dataDir, args);
      const status = await waitFor(
        'the restarted server to finish the re-wrap',
        async () => (await api(server, 'GET', '/v1/kek')).body,
        (body) => body.rewrap.remaining === 0 && body.rewrap.running === false,
      );
      expect(status.versions.map((v: { version: number; dataKeys: number }) => [v.version, v.dataKeys])).toEqual([
        [1, 0],
        [2, SECRETS * VERSIONS],
      ]);
      const after = await holder.rows();
      expect(after.map((row) => Number(row.kek_version))).toEqual(before.map(() => 2));
      // Only the data keys moved: every sealed value is byte for byte what it was.
      expect(after.map((row) => row.sealed)).toEqual(before.map((row) => row.sealed));
      const retired = await api(server, 'POST', '/v1/kek/versions/1/retire');
      expect(retired.status, JSON.stringify(retired.body)).toBe(200);
      expect(retired.body.versions[0]).toMatchObject({ version: 1, state: 'retired' });
      for (let s = 0; s < SECRETS; s++) {
        for (let v = 1; v <= VERSIONS; v++) expect((await api(server, 'GET', `/v1/secrets/crash/s-${s}?version=${v}`)).body.value).toBe(`value-${s}-${v}`);
      }
      const verified = await server.cli(['audit', 'verify', '--json']);
      expect(verified.code, verified.stderr + verified.stdout).toBe(0);
      await server.stop();
    } finally {
      await holder?.close().catch(() => undefined);
      await database?.drop();
    }
  });
});
