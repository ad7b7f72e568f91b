/**
 * The postgres connector on the machine's real PostgreSQL: alternating users, with a client
 * connecting in a loop on the current credential while the roles rotate several times.
 *
 * The test server trusts 127.0.0.1 (pg_hba `trust`), so a login alone would accept any
 * password. Every connection of the loop therefore also checks its password against the
 * role's stored SCRAM verifier in pg_authid first: exactly what a `scram-sha-256` server
 * would decide at that moment.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ConnectorError, PostgresConnector, quoteIdentifier, scramMatches, type ConnectorContext, type Credential } from '../../src/rotation/connectors/index.js';
import { postgresUrl } from '../support/databases.js';
import { waitUntil } from '../support/wait.js';

const url = postgresUrl();
const pgQuery = pg.Client.prototype.query;
const suffix = randomBytes(4).toString('hex');
// The second role's name needs quoting: a quote, a space and SQL that must stay inert.
const ROLES = [`ks_conn_${suffix}_a`, `ks_conn_${suffix}_b "x"; drop role postgres; --`] as const;

function ctx(current?: Credential, runId = 'rot_pg'): ConnectorContext {
  return {
    runId,
    settings: { adminSecret: 'databases/test/admin', roles: [...ROLES] },
    ...(current ? { current } : {}),
    readSecret: async (path) => {
      if (path === 'databases/test/admin') return { url };
      throw new Error(`no secret at ${path}`);
    },
  };
}

function creds(credential: Credential): { username: string; password: string } {
  return credential.value as { username: string; password: string };
}

(url === '' ? describe.skip : describe)('postgres connector (alternating users) on PostgreSQL', () => {
  let admin: pg.Client;
  const connector = new PostgresConnector();

  async function verifierOf(role: string): Promise<string> {
    const result = await admin.query<{ rolpassword: string | null }>('select rolpassword from pg_authid where rolname = $1', [role]);
    return result.rows[0]?.rolpassword ?? '';
  }

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: url });
    await admin.connect();
    for (const role of ROLES) await admin.query(`create role ${quoteIdentifier(role)} login`);
  });

  afterAll(async () => {
    for (const role of ROLES) await admin.query(`drop role if exists ${quoteIdentifier(role)}`);
    await admin.end();
  });

  it('computes the same SCRAM verifier as the server does', async () => {
    await admin.query(`set password_encryption = 'scram-sha-256'`);
    await admin.query(`alter role ${quoteIdentifier(ROLES[0])} password 'plain-Pa55word'`);
    const stored = await verifierOf(ROLES[0]);
    expect(stored).toMatch(/^SCRAM-SHA-256\$4096:/);
    expect(scramMatches('plain-Pa55word', stored)).toBe(true);
    expect(scramMatches('plain-Pa55word!', stored)).toBe(false);
  });

  it('gives the idle role a new password, leaves the current one alone, and refuses to revoke the current role', async () => {
    const first = await connector.create(ctx());
    expect(creds(first.credential).username).toBe(ROLES[0]);
    expect(first.evidence).toEqual({ role: ROLES[0], previousRole: null, passwordFormat: 'scram-sha-256' });
    expect(scramMatches(creds(first.credential).password, await verifierOf(ROLES[0]))).toBe(true);

    const before = await verifierOf(ROLES[0]);
    const second = await connector.create(ctx(first.credential));
    expect(creds(second.credential).username).toBe(ROLES[1]);
    expect(await verifierOf(ROLES[0])).toBe(before);
    expect(scramMatches(creds(second.credential).password, await verifierOf(ROLES[1]))).toBe(true);
    expect(await connector.test(ctx(first.credential), second.credential)).toMatchObject({ ok: true, evidence: { role: ROLES[1], connected: true } });

    const refused = await connector.revoke(ctx(first.credential), { value: { username: ROLES[0] } }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ConnectorError);
    expect(refused).toMatchObject({ code: 'ERR_CONNECTOR_REJECTED', step: 'revoke', retryable: false });
    expect(await verifierOf(ROLES[0])).toBe(before);

    // After the flip (current = second), the old role's password stops matching.
    expect(await connector.revoke(ctx(second.credential), first.credential)).toEqual({ role: ROLES[0], currentRole: ROLES[1], passwordReplaced: true });
    expect(scramMatches(creds(first.credential).password, await verifierOf(ROLES[0]))).toBe(false);
    expect(scramMatches(creds(second.credential).password, await verifierOf(ROLES[1]))).toBe(true);
  });

  it('answers ok: false for a role that cannot log in, and names a missing role', async () => {
    const missing = await connector.test(ctx(), { value: { username: `ks_missing_${suffix}`, password: 'whatever-pw' } });
    expect(missing).toEqual({ ok: false, evidence: { role: `ks_missing_${suffix}`, connected: false, sqlstate: '28000' } });
    const settings = { adminSecret: 'databases/test/admin', roles: [`ks_missing_${suffix}`, ROLES[0]] };
    const error = await connector.create({ ...ctx(), settings }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ERR_CONNECTOR_REJECTED', retryable: false });
  });

  it('keeps the new password out of the server: ALTER ROLE is sent a SCRAM verifier, with the name quoted', async () => {
    const sent: string[] = [];
    const spy = vi.spyOn(pg.Client.prototype, 'query').mockImplementation(function (this: pg.Client, ...args: unknown[]) {
      if (typeof args[0] === 'string') sent.push(args[0]);
      return (pgQuery as (...a: unknown[]) => unknown).apply(this, args);
    } as never);
    try {
      const made = await connector.create(ctx(undefined, 'rot_quoted'));
      const password = creds(made.credential).password;
      expect(sent.join('\n')).not.toContain(password);
      expect(sent).toEqual([expect.stringMatching(/^alter role "ks_conn_[0-9a-f]+_a" with login password 'SCRAM-SHA-256\$4096:[^']+'$/)]);
      const other = await connector.create(ctx(made.credential, 'rot_quoted2'));
      expect(sent[1]).toContain(`alter role "ks_conn_${suffix}_b ""x""; drop role postgres; --" with login`);
      expect(creds(other.credential).username).toBe(ROLES[1]);
    } finally {
      spy.mockRestore();
    }
    expect(await admin.query("select 1 from pg_roles where rolname = 'postgres'")).toMatchObject({ rowCount: 1 });
  });

  it('rotates five times under a connecting client with zero failed connections', async () => {
    // The vault, as the client sees it: the current credential.
    let current: Credential = (await connector.create(ctx())).credential;
    let stop = false;
    let attempts = 0;
    const failures: string[] = [];

    /** Per loop: the credential its attempt in progress uses, and how many attempts it has finished. */
    const using: Credential[] = [];
    const finished: number[] = [];
    const client = async (n: number): Promise<void> => {
      finished[n] = 0;
      while (!stop) {
        using[n] = current;
        const { username, password } = creds(current);
        attempts += 1;
        try {
          // What a scram-sha-256 server would decide, then a real login as that role.
          if (!scramMatches(password, await verifierOf(username))) throw new Error(`password refused for ${username}`);
          const c = new pg.Client({ connectionString: withUser(url, username, password) });
          await c.connect();
          const { rows } = await c.query<{ user: string }>('select current_user as user');
          await c.end();
          if (rows[0]?.user !== username) throw new Error(`connected as ${rows[0]?.user}`);
        } catch (error) {
          failures.push((error as Error).message);
        }
        finished[n]! += 1;
      }
    };
    const loops = [client(0), client(1)];

    const roles: string[] = [];
    for (let i = 0; i < 5; i++) {
      const made = await connector.create(ctx(current, `rot_loop_${i}`));
      expect((await connector.test(ctx(current), made.credential)).ok).toBe(true);
      const old = current;
      current = made.credential; // promote: the flip
      roles.push(creds(current).username);
      // The grace clients get to re-read the vault: the old role is revoked once every loop has
      // moved on to the new credential (no attempt with the old one is still in flight).
      await waitUntil('every client to use the new credential', () => using.every((credential) => credential === current));
      await connector.revoke(ctx(current), old);
      // Each loop then connects at least once, from start to end, with the old role revoked.
      const seen = [...finished];
      await waitUntil('every client to connect after the revoke', () => finished.every((count, n) => count >= seen[n]! + 2));
    }
    stop = true;
    await Promise.all(loops);

    expect(roles).toEqual([ROLES[1], ROLES[0], ROLES[1], ROLES[0], ROLES[1]]);
    expect(attempts).toBeGreaterThan(20);
    expect(failures).toEqual([]);
  });
});

function withUser(base: string, username: string, password: string): string {
  const u = new URL(base);
  u.username = encodeURIComponent(username);
  u.password = encodeURIComponent(password);
  return u.toString();
}
