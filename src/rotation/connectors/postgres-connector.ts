/**
 * The `postgres` connector: a database password rotated with alternating users, so no client
 * ever holds a password that stops working while it still uses it.
 *
 *   adminSecret: databases/orders/admin     # vault value: the admin connection URL, or { url }
 *   roles: [orders_app_a, orders_app_b]     # two LOGIN roles with the same privileges
 *   timeout: 10s                            # connect and statement timeout (default 10s)
 *
 * The credential is `{ username, password }`. create picks the role that is not in the
 * current credential (ctx.current; roles[0] when there is none) and gives it a new random
 * password; the current role is never touched, so its clients carry on. set does nothing:
 * clients read the credential from the vault. test connects as the new role. The engine's
 * promote is the flip: `current` now names the other role. revoke gives the old role a random
 * password nobody knows; it refuses to revoke the role that ctx.current names, so call it only
 * after the flip and after a grace long enough for clients to have re-read the vault
 * (connections already open are not affected by a password change).
 *
 * Passwords never travel in clear to the server: ALTER ROLE gets a SCRAM-SHA-256 verifier
 * computed here (as psql's \password does), so neither the server log nor
 * pg_stat_statements can show one. ALTER ROLE takes no bind parameters; the role name is
 * quoted as an identifier and the verifier, whose alphabet is fixed, as a literal.
 *
 * A create retried for the same run sets the idle role's password again and answers the new
 * one: still one credential (the idle role), and only the last answer works.
 */
import { createHash, createHmac, pbkdf2Sync } from 'node:crypto';
import { Socket } from 'node:net';
import pg from 'pg';
import { EgressRefusedError, type Egress } from '../../outbound/index.js';
import { tryParseDuration } from '../../shared/duration.js';
import { encodeBase62 } from '../../shared/base62.js';
import type { RandomBytes } from '../../shared/ids.js';
import { secureRandom } from '../../crypto/index.js';
import {
  ConnectorError,
  scrub,
  secretStrings,
  type Connector,
  type ConnectorContext,
  type ConnectorErrorCode,
  type ConnectorStep,
  type CreateResult,
  type Credential,
  type CredentialValue,
  type RevokeTarget,
  type StepEvidence,
  type TestResult,
} from './connector.js';

export interface PostgresSettings {
  readonly adminSecret: string;
  readonly roles: readonly [string, string];
  readonly timeout?: string;
}

export interface PostgresConnectorDeps {
  readonly random?: RandomBytes;
  /**
   * The egress allowlist. The admin URL is a vault value, never seen at put time, so its host and
   * port are checked on every connection and the socket goes to the address checked. The server
   * always gives one (nothing allowed by default); a connector built without one (tests) is unchecked.
   */
  readonly egress?: Egress;
}

/** Query parameters of a connection string that would move the connection past the checked host. */
const HOST_OVERRIDES = new Set(['host', 'hostaddr', 'port']);

export const DEFAULT_POSTGRES_TIMEOUT_MS = 10_000;
const SCRAM_ITERATIONS = 4096;
const PASSWORD_LENGTH = 32; // base62 characters, 23 random bytes, 184 bits
/** SQLSTATEs that mean "the credential is wrong", an outcome of test rather than a failure. */
const AUTH_FAILURES = new Set(['28P01', '28000']);
/** SQLSTATEs worth retrying: 08 connection exception, 53 resources, 57P0x shutdown, 57014 statement timeout. */
const TRANSIENT_STATES = /^(08|53|57P0|57014)/;
/** Socket errors worth retrying (a name that does not resolve at all is a settings problem). */
const TRANSIENT_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'EPIPE']);

export function validatePostgresSettings(settings: unknown): string[] {
  if (settings === null || typeof settings !== 'object' || Array.isArray(settings)) return ['settings must be an object'];
  const s = settings as Record<string, unknown>;
  const problems: string[] = [];
  for (const field of Object.keys(s)) if (!['adminSecret', 'roles', 'timeout'].includes(field)) problems.push(`${field} is not a postgres connector setting`);
  if (typeof s.adminSecret !== 'string' || s.adminSecret === '') problems.push('adminSecret must be the vault path of the admin connection URL');
  const roles = s.roles;
  if (!Array.isArray(roles) || roles.length !== 2 || roles.some((r) => typeof r !== 'string' || r === '' || Buffer.byteLength(r) > 63 || r.includes('\u0000'))) {
    problems.push('roles must be two role names (1 to 63 bytes each)');
  } else if (roles[0] === roles[1]) {
    problems.push('roles must name two different roles');
  }
  if (s.timeout !== undefined && (typeof s.timeout !== 'string' || tryParseDuration(s.timeout) === undefined)) {
    problems.push('timeout must be a duration such as 10s');
  }
  return problems;
}

/** `"name"` with embedded quotes doubled: safe for any role name PostgreSQL accepts. */
export function quoteIdentifier(name: string): string {
  if (name.includes('\u0000')) throw new RangeError('an identifier cannot contain NUL');
  return `"${name.replace(/"/g, '""')}"`;
}

/** A SCRAM-SHA-256 verifier for ALTER ROLE … PASSWORD (RFC 5802/7677, PostgreSQL's format). */
export function scramVerifier(password: string, salt: Uint8Array, iterations = SCRAM_ITERATIONS): string {
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${Buffer.from(salt).toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/** True when `password` matches a stored SCRAM-SHA-256 verifier (what the server would decide). */
export function scramMatches(password: string, verifier: string): boolean {
  const match = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$/.exec(verifier);
  if (!match) return false;
  return scramVerifier(password, Buffer.from(match[2]!, 'base64'), Number(match[1])) === verifier;
}

function usernameOf(credential: { value?: CredentialValue } | undefined): string | undefined {
  const value = credential?.value;
  if (value === undefined || typeof value === 'string') return undefined;
  return typeof value.username === 'string' ? value.username : undefined;
}

export class PostgresConnector implements Connector {
  readonly type = 'postgres';
  private readonly random: RandomBytes;
  private readonly egress: Egress | undefined;

  constructor(deps: PostgresConnectorDeps = {}) {
    this.random = deps.random ?? secureRandom;
    this.egress = deps.egress;
  }

  validateSettings(settings: unknown): string[] {
    return validatePostgresSettings(settings);
  }

  async create(ctx: ConnectorContext): Promise<CreateResult> {
    const settings = this.settings(ctx, 'create');
    const currentRole = usernameOf(ctx.current);
    if (currentRole !== undefined && !settings.roles.includes(currentRole)) {
      throw this.error('ERR_CONNECTOR_REJECTED', 'create', `the current credential's role is not one of the two configured roles`, false);
    }
    const role = currentRole === settings.roles[0] ? settings.roles[1] : settings.roles[0];
    const password = encodeBase62(this.random(23), PASSWORD_LENGTH);
    await this.setPassword(ctx, settings, 'create', role, password);
    return {
      credential: { value: { username: role, password } },
      evidence: { role, previousRole: currentRole ?? null, passwordFormat: 'scram-sha-256' },
    };
  }

  async set(ctx: ConnectorContext): Promise<StepEvidence> {
    this.settings(ctx, 'set');
    return { skipped: true, reason: 'clients read the credential from the vault' };
  }

  async test(ctx: ConnectorContext, credential: Credential): Promise<TestResult> {
    const settings = this.settings(ctx, 'test');
    const value = credential.value;
    if (typeof value === 'string' || typeof value.username !== 'string' || typeof value.password !== 'string') {
      throw this.error('ERR_CONNECTOR_FAILED', 'test', 'the credential must be { username, password }', false);
    }
    const admin = await this.adminUrl(ctx, 'test');
    const client = new pg.Client({
      ...(await this.route(admin, 'test')),
      connectionString: asRole(admin, value.username, value.password),
      connectionTimeoutMillis: this.timeoutMs(settings),
    });
    client.on('error', () => undefined);
    const started = performance.now();
    try {
      await client.connect();
      const result = await client.query<{ user: string }>('select current_user as user');
      const ok = result.rows[0]?.user === value.username;
      return { ok, evidence: { role: value.username, connected: true, durationMs: Math.round(performance.now() - started) } };
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code !== undefined && AUTH_FAILURES.has(code)) {
        return { ok: false, evidence: { role: value.username, connected: false, sqlstate: code } };
      }
      throw this.failure('test', error, [value.password, admin]);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async revoke(ctx: ConnectorContext, old: RevokeTarget): Promise<StepEvidence> {
    const settings = this.settings(ctx, 'revoke');
    const role = usernameOf(old);
    if (role === undefined || !settings.roles.includes(role)) {
      throw this.error('ERR_CONNECTOR_FAILED', 'revoke', 'the old credential must be { username } naming one of the two roles', false);
    }
    const currentRole = usernameOf(ctx.current);
    if (currentRole === undefined) {
      throw this.error('ERR_CONNECTOR_REJECTED', 'revoke', 'revoke needs the current credential, to be sure it is not the one revoked', false);
    }
    if (currentRole === role) {
      throw this.error('ERR_CONNECTOR_REJECTED', 'revoke', `${role} is the current role: revoke only after the flip`, false);
    }
    await this.setPassword(ctx, settings, 'revoke', role, encodeBase62(this.random(23), PASSWORD_LENGTH));
    return { role, currentRole, passwordReplaced: true };
  }

  private settings(ctx: ConnectorContext, step: ConnectorStep): PostgresSettings {
    const problems = validatePostgresSettings(ctx.settings);
    if (problems.length > 0) {
      throw new ConnectorError('ERR_CONNECTOR_SETTINGS_INVALID', `postgres connector: ${problems.join('; ')}`, {
        connector: this.type,
        step,
        retryable: false,
      });
    }
    return ctx.settings as unknown as PostgresSettings;
  }

  private timeoutMs(settings: PostgresSettings): number {
    return settings.timeout ? tryParseDuration(settings.timeout)! : DEFAULT_POSTGRES_TIMEOUT_MS;
  }

  private async adminUrl(ctx: ConnectorContext, step: ConnectorStep): Promise<string> {
    const secret = await ctx.readSecret((ctx.settings as unknown as PostgresSettings).adminSecret);
    const url = typeof secret === 'string' ? secret : secret.url;
    if (typeof url !== 'string' || !/^postgres(ql)?:\/\//.test(url)) {
      throw this.error('ERR_CONNECTOR_SETTINGS_INVALID', step, 'the admin secret must be a postgres:// URL, or { url }', false);
    }
    return url;
  }

  /**
   * Where a client may connect: refused (ERR_CONNECTOR_EGRESS_REFUSED, not retried) unless the
   * egress allowlist passes the URL's host and port; then a socket that connects to the address
   * checked, whatever the name resolves to later. TLS still verifies the URL's host name.
   */
  private async route(url: string, step: ConnectorStep): Promise<{ stream?: () => Socket }> {
    const egress = this.egress;
    if (egress === undefined) return {};
    let parsed: URL;
    let host: string;
    try {
      parsed = new URL(url);
      host = decodeURIComponent(parsed.hostname);
    } catch {
      throw this.error('ERR_CONNECTOR_SETTINGS_INVALID', step, 'the admin secret is not a postgres:// URL', false);
    }
    const override = [...parsed.searchParams.keys()].find((name) => HOST_OVERRIDES.has(name));
    if (override !== undefined) throw this.error('ERR_CONNECTOR_EGRESS_REFUSED', step, `the admin URL may not name its host in the query (${override}=)`, false);
    let address: string;
    try {
      address = (await egress.resolveChecked(host, parsed.port === '' ? 5432 : Number(parsed.port)))[0]!.address;
    } catch (error) {
      if (error instanceof EgressRefusedError) throw this.error('ERR_CONNECTOR_EGRESS_REFUSED', step, error.message, false);
      throw error;
    }
    return {
      stream: () => {
        const socket = new Socket();
        const connect = socket.connect.bind(socket) as (port: number, host: string) => Socket;
        // pg calls connect(port, host): the port is the URL's, the host the address just checked.
        (socket as unknown as { connect: (port: number) => Socket }).connect = (port: number) => connect(port, address);
        return socket;
      },
    };
  }

  private async setPassword(ctx: ConnectorContext, settings: PostgresSettings, step: ConnectorStep, role: string, password: string): Promise<void> {
    const admin = await this.adminUrl(ctx, step);
    const verifier = scramVerifier(password, this.random(16));
    // The verifier's alphabet (base64, digits, `$`, `:`, `-`) needs no escaping; checked anyway.
    if (!/^[A-Za-z0-9+/=$:-]+$/.test(verifier)) throw new RangeError('unexpected verifier alphabet');
    const client = new pg.Client({
      ...(await this.route(admin, step)),
      connectionString: admin,
      connectionTimeoutMillis: this.timeoutMs(settings),
      statement_timeout: this.timeoutMs(settings),
    });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query(`alter role ${quoteIdentifier(role)} with login password '${verifier}'`);
    } catch (error) {
      if ((error as { code?: string }).code === '42704') {
        throw this.error('ERR_CONNECTOR_REJECTED', step, `role ${JSON.stringify(role)} does not exist`, false);
      }
      throw this.failure(step, error, [password, admin, verifier]);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  private failure(step: ConnectorStep, error: unknown, secrets: string[]): ConnectorError {
    const code = (error as { code?: unknown }).code;
    const sqlstate = typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
    const errno = typeof code === 'string' && sqlstate === undefined ? code : undefined;
    const urlPasswords = secrets.flatMap((s) => {
      try {
        const url = new URL(s);
        return url.password ? [decodeURIComponent(url.password)] : [];
      } catch {
        return [];
      }
    });
    const message = scrub((error as Error).message ?? 'unknown error', secretStrings(...secrets, ...urlPasswords));
    const transient =
      sqlstate !== undefined
        ? TRANSIENT_STATES.test(sqlstate)
        : errno !== undefined
          ? TRANSIENT_ERRNOS.has(errno)
          : /timeout|terminated/i.test(message);
    const timeout = /timeout/i.test(message);
    return this.error(
      timeout ? 'ERR_CONNECTOR_TIMEOUT' : 'ERR_CONNECTOR_FAILED',
      step,
      `${message}${sqlstate ? ` (SQLSTATE ${sqlstate})` : ''}`,
      transient,
    );
  }

  private error(code: ConnectorErrorCode, step: ConnectorStep, message: string, retryable: boolean): ConnectorError {
    return new ConnectorError(code, `postgres connector, ${step}: ${message}`, { connector: this.type, step, retryable });
  }
}

/**
 * The admin URL with the role's user and password in place of the admin's: same host, port,
 * database and TLS options. (pg lets a connection string override separate fields, so they
 * go into the string itself.)
 */
function asRole(adminUrl: string, username: string, password: string): string {
  const url = new URL(adminUrl);
  url.username = encodeURIComponent(username);
  url.password = encodeURIComponent(password);
  return url.toString();
}
