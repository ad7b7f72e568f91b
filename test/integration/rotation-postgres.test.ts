/**
 * The postgres connector driven by the rotation engine, on both store dialects: a database
 * credential `{ username, password }` rotated several times between two real roles on the
 * machine's PostgreSQL while clients read the vault's current credential and connect with it.
 *
 * The test server trusts 127.0.0.1 (pg_hba `trust`), so a login alone would accept any
 * password: each connection first checks its password against the role's SCRAM verifier in
 * pg_authid, as a `scram-sha-256` server would (see connector-postgres.test.ts).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from 'vitest';
import { listAudit } from '../../src/audit/index.js';
import { quoteIdentifier, scramMatches } from '../../src/rotation/connectors/index.js';
import { createTestContext, type TestContext } from '../support/context.js';
import { describeEachDialect, postgresUrl } from '../support/databases.js';
import { drive, policyAuthor } from '../support/rotation.js';

const ADMIN = { actor: 'prn_admin' };
const APP_PATH = 'databases/orders/app';
const ADMIN_PATH = 'databases/orders/admin';
const ROTATIONS = 4;

interface DbCredential {
  readonly username: string;
  readonly password: string;
}

const url = postgresUrl();
/** The operator's egress rule for the test database: the connector connects only where it allows. */
const dbEgress = url === '' ? [] : [`${new URL(url).hostname}:${new URL(url).port || '5432'}`];

describeEachDialect('rotation runs with the postgres connector', (dialect) => {
  let ctx: TestContext;
  // A pool: the clients look up verifiers concurrently with the test.
  let admin: pg.Pool;
  const suffix = randomBytes(4).toString('hex');
  const roles = [`ks_eng_${suffix}_a`, `ks_eng_${suffix}_b`] as const;

  async function verifierOf(role: string): Promise<string> {
    const result = await admin.query<{ rolpassword: string | null }>('select rolpassword from pg_authid where rolname = $1', [role]);
    return result.rows[0]?.rolpassword ?? '';
  }

  async function current(): Promise<DbCredential> {
    return (await ctx.secrets.read(ADMIN, APP_PATH)).value as unknown as DbCredential;
  }

  beforeAll(async () => {
    if (url === '') return;
    admin = new pg.Pool({ connectionString: url, max: 4 });
    for (const role of roles) await admin.query(`create role ${quoteIdentifier(role)} login`);
  });
  afterAll(async () => {
    if (url === '') return;
    for (const role of roles) await admin.query(`drop role if exists ${quoteIdentifier(role)}`);
    await admin.end();
  });
  beforeEach(async () => {
    ctx = await createTestContext(dialect, { egress: { allow: dbEgress } });
  });
  afterEach(async () => {
    await ctx.close();
  });

  it.skipIf(url === '')('rotates between the two roles several times under connecting clients with zero failed connections', async () => {
    // Role A in use, with a password the server hashed itself.
    const initial: DbCredential = { username: roles[0], password: randomBytes(18).toString('hex') };
    const setup = await admin.connect();
    try {
      await setup.query(`set password_encryption = 'scram-sha-256'`);
      await setup.query(`alter role ${quoteIdentifier(roles[0])} password '${initial.password}'`);
    } finally {
      setup.release();
    }
    await ctx.secrets.put(ADMIN, ADMIN_PATH, { value: { url } });
    await ctx.secrets.put(ADMIN, APP_PATH, { value: { ...initial } });
    await ctx.rotationPolicies.put(policyAuthor(ctx), 'orders-db', {
      name: 'orders-db',
      target: { secret: APP_PATH },
      schedule: { every: '30d' },
      overlap: '1h',
      connector: { type: 'postgres', settings: { adminSecret: ADMIN_PATH, roles: [...roles] } },
    });
    expect(scramMatches(initial.password, await verifierOf(roles[0]))).toBe(true);

    let stop = false;
    const failures: string[] = [];
    /** Iterations each client has finished, and the number at which its latest began. */
    const finished = [0, 0];
    const attempts = [0, 0];
    const client = async (index: number): Promise<void> => {
      while (!stop) {
        attempts[index]! += 1;
        try {
          const { username, password } = await current();
          if (!scramMatches(password, await verifierOf(username))) throw new Error(`password refused for ${username}`);
          const connection = new pg.Client({ connectionString: withUser(url, username, password) });
          await connection.connect();
          const { rows } = await connection.query<{ user: string }>('select current_user as user');
          await connection.end();
          if (rows[0]?.user !== username) throw new Error(`connected as ${rows[0]?.user}`);
        } catch (error) {
          failures.push((error as Error).message);
        }
        finished[index]! += 1;
      }
    };
    /** Resolves once every client has finished an iteration begun after this call: none still holds what it read before. */
    const clientsCaughtUp = async (): Promise<void> => {
      const begun = [...attempts];
      while (finished.some((count, index) => count < begun[index]! + 1)) await new Promise((resolve) => setTimeout(resolve, 5));
    };
    const loops = [client(0), client(1)];

    try {
      let previous = initial;
      const seen: string[] = [];
      for (let i = 0; i < ROTATIONS; i += 1) {
        const started = await ctx.rotation.trigger(ADMIN, { secret: APP_PATH, trigger: 'manual', reason: `rotation ${i}` });
        const done = await drive(ctx, started!.id, { until: (run) => run.status !== 'running' });
        expect(done.status, done.error ?? '').toBe('done');
        expect(done.timeline.map((step) => `${step.step}:${step.outcome}`)).toEqual(['create:ok', 'set:ok', 'test:ok', 'promote:ok', 'gate:ok']);

        // The vault's current credential names the other role, and works.
        const now = await current();
        seen.push(now.username);
        expect(now.username).not.toBe(previous.username);
        expect(scramMatches(now.password, await verifierOf(now.username))).toBe(true);
        // Until the revocation is paid, the old role still works for clients that read it before the flip.
        expect(done.revocations).toEqual([expect.objectContaining({ which: 'old', status: 'waiting' })]);
        expect(scramMatches(previous.password, await verifierOf(previous.username))).toBe(true);

        await clientsCaughtUp();
        const paid = await drive(ctx, started!.id, { advance: true });
        expect(paid.revocations).toEqual([expect.objectContaining({ which: 'old', status: 'done' })]);
        expect(paid.timeline.at(-1)).toMatchObject({ step: 'finish', outcome: 'revoked old', evidence: { role: previous.username, currentRole: now.username, passwordReplaced: true } });
        expect(scramMatches(previous.password, await verifierOf(previous.username))).toBe(false);
        expect(scramMatches(now.password, await verifierOf(now.username))).toBe(true);

        // No password in the run record.
        const record = JSON.stringify(paid);
        expect(record).not.toContain(now.password);
        expect(record).not.toContain(previous.password);
        previous = now;
      }
      expect(seen).toEqual([roles[1], roles[0], roles[1], roles[0]]);
    } finally {
      stop = true;
      await Promise.all(loops);
    }

    expect(attempts[0]! + attempts[1]!).toBeGreaterThan(4 * ROTATIONS);
    expect(failures).toEqual([]);
    const audit = JSON.stringify(await listAudit(ctx.store.db, { limit: 1000 }));
    expect(audit).not.toContain(initial.password);
    expect(audit).not.toContain((await current()).password);
  });
});

function withUser(base: string, username: string, password: string): string {
  const u = new URL(base);
  u.username = encodeURIComponent(username);
  u.password = encodeURIComponent(password);
  return u.toString();
}
