/**
 * The `command` connector, for the long tail of vendors: an external program does each step.
 * The program is one the operator registered (the configuration file's `programs`: absolute
 * path, SHA-256, fixed arguments); a policy names it (`program: <name>`) and may add arguments
 * only where the registry's `allowArgs` patterns allow, never a path or a shell. The file's hash
 * is checked again before every start; a mismatch fails the step (not retryable) unspawned.
 * For every step Keysmith spawns the program (no shell: args are passed as they are), writes
 * one JSON object to its standard input and reads one JSON object from its standard output:
 *
 *   in:  { step, runId, settings: <settings.config or {}>, secrets: { name: value }, credential? }
 *   out: { credential?: { value, vendorId? }, ok?: boolean, evidence?: { field: primitive } }
 *
 * A non-zero exit, an answer that is not one JSON object, or the timeout (the whole process
 * group is killed) is a ConnectorError carrying the step and the tail of standard error, with
 * every known secret scrubbed out. Exit code 75 (EX_TEMPFAIL) marks a failure as retryable.
 * The program gets a minimal environment (PATH, LANG, plus `env` from the settings), never
 * Keysmith's own, and the run id doubles as its idempotency key for create.
 */
import { spawn } from 'node:child_process';
import { NO_PROGRAMS, ProgramRefusedError, type PreparedProgram, type ProgramRegistry } from '../../outbound/index.js';
import { tryParseDuration } from '../../shared/duration.js';
import {
  ConnectorError,
  sanitizeEvidence,
  secretStrings,
  tail,
  type Connector,
  type ConnectorContext,
  type ConnectorStep,
  type CreateResult,
  type Credential,
  type CredentialValue,
  type RevokeTarget,
  type StepEvidence,
  type TestResult,
} from './connector.js';
import { scrubText } from '../failure.js';

export interface CommandSettings {
  /** The name of a program registered in the server configuration. */
  readonly program: string;
  /** Extra arguments, each allowed by the program's `allowArgs`. */
  readonly args?: readonly string[];
  /** Duration per step, default 30s. */
  readonly timeout?: string;
  /** Vault paths whose values are handed to the program under `secrets.<name>`. */
  readonly secrets?: Readonly<Record<string, string>>;
  /** Extra environment variables (not secrets: use `secrets`). */
  readonly env?: Readonly<Record<string, string>>;
  /** Free-form, non-secret configuration passed to the program as `settings`. */
  readonly config?: Readonly<Record<string, unknown>>;
}

export const DEFAULT_COMMAND_TIMEOUT_MS = 30_000;
/** Exit status meaning "try again later" (sysexits EX_TEMPFAIL). */
export const EXIT_TEMPFAIL = 75;
const MAX_STDOUT = 1024 * 1024;
const MAX_STDERR_KEPT = 16 * 1024;
const KILL_GRACE_MS = 2_000;

/**
 * Environment names a policy may not set: they change which code the program loads (the
 * dynamic loader, interpreters, shells, glibc tunables), where its traffic goes (proxies, the
 * resolver's aliases), whom it trusts (TLS roots, OpenSSL's configuration, which can load a
 * module), which configuration files it reads (HOME, XDG_*), or what Keysmith itself tells it.
 */
const FORBIDDEN_ENV_RE =
  /^(PATH|IFS|ENV|BASH_ENV|SHELLOPTS|BASHOPTS|PS4|LD_.*|DYLD_.*|NODE_.*|PYTHON.*|PERL.*|RUBY.*|GCONV_PATH|LOCPATH|NLSPATH|JAVA_TOOL_OPTIONS|_JAVA_OPTIONS|GIT_.*|KEYSMITH_.*|.*_PROXY|OPENSSL_.*|SSL_CERT_.*|CURL_CA_BUNDLE|REQUESTS_CA_BUNDLE|HOSTALIASES|RES_OPTIONS|LOCALDOMAIN|GLIBC_TUNABLES|MALLOC_.*|HOME|XDG_.*)$/i;
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]{0,99}$/;

/**
 * The settings' problems. With a program registry, `program` must be registered and `args`
 * allowed by it; without one (the CLI checking a file away from any server) only the shape.
 */
export function validateCommandSettings(settings: unknown, programs?: ProgramRegistry): string[] {
  if (settings === null || typeof settings !== 'object' || Array.isArray(settings)) return ['settings must be an object'];
  const s = settings as Record<string, unknown>;
  const problems: string[] = [];
  if (s.command !== undefined) problems.push('command is not allowed: name a program registered in the server configuration with program');
  const argsOk = s.args === undefined || (Array.isArray(s.args) && s.args.every((a) => typeof a === 'string'));
  if (!argsOk) problems.push('args must be a list of strings');
  if (typeof s.program !== 'string' || s.program.trim() === '') problems.push('program must name a program registered in the server configuration');
  else if (programs !== undefined) problems.push(...programs.checkUse(s.program, argsOk ? ((s.args as string[] | undefined) ?? []) : []));
  if (s.timeout !== undefined && (typeof s.timeout !== 'string' || tryParseDuration(s.timeout) === undefined)) {
    problems.push('timeout must be a duration such as 30s or 5m');
  }
  for (const field of ['secrets', 'env'] as const) {
    const value = s[field];
    if (value === undefined) continue;
    if (value === null || typeof value !== 'object' || Array.isArray(value) || Object.values(value).some((v) => typeof v !== 'string')) {
      problems.push(`${field} must map names to strings`);
    }
  }
  if (s.env !== null && typeof s.env === 'object') {
    for (const name of Object.keys(s.env)) {
      if (!ENV_NAME_RE.test(name) || FORBIDDEN_ENV_RE.test(name)) problems.push(`env.${name.slice(0, 60)} may not be set by a policy`);
    }
  }
  if (s.config !== undefined && (s.config === null || typeof s.config !== 'object' || Array.isArray(s.config))) {
    problems.push('config must be an object');
  }
  const known = new Set(['program', 'command', 'args', 'timeout', 'secrets', 'env', 'config']);
  for (const field of Object.keys(s)) if (!known.has(field)) problems.push(`${field.slice(0, 60)} is not a command connector setting`);
  return problems;
}

interface StepAnswer {
  readonly raw: Record<string, unknown>;
  readonly secrets: readonly string[];
}

export interface CommandConnectorDeps {
  /** The registered programs; without it settings are checked for shape only and no program runs. */
  readonly programs?: ProgramRegistry;
}

export class CommandConnector implements Connector {
  readonly type = 'command';
  readonly #programs: ProgramRegistry | undefined;

  constructor(deps: CommandConnectorDeps = {}) {
    this.#programs = deps.programs;
  }

  validateSettings(settings: unknown): string[] {
    return validateCommandSettings(settings, this.#programs);
  }

  async create(ctx: ConnectorContext): Promise<CreateResult> {
    const { raw, secrets } = await this.run(ctx, 'create');
    const credential = raw.credential as Record<string, unknown> | undefined;
    const value = credential?.value;
    const valueOk = typeof value === 'string' ? value !== '' : value !== null && typeof value === 'object' && !Array.isArray(value);
    if (!credential || typeof credential !== 'object' || !valueOk) {
      throw this.error('ERR_CONNECTOR_BAD_RESPONSE', 'create', 'the program answered without credential.value', false);
    }
    if (credential.vendorId !== undefined && typeof credential.vendorId !== 'string') {
      throw this.error('ERR_CONNECTOR_BAD_RESPONSE', 'create', 'credential.vendorId must be a string', false);
    }
    const made: Credential = {
      value: value as CredentialValue,
      ...(typeof credential.vendorId === 'string' ? { vendorId: credential.vendorId } : {}),
    };
    return { credential: made, evidence: sanitizeEvidence(raw.evidence, [...secretStrings(made.value), ...secrets]) };
  }

  async set(ctx: ConnectorContext, credential: Credential): Promise<StepEvidence> {
    const { raw, secrets } = await this.run(ctx, 'set', credential);
    return sanitizeEvidence(raw.evidence, secrets);
  }

  async test(ctx: ConnectorContext, credential: Credential): Promise<TestResult> {
    const { raw, secrets } = await this.run(ctx, 'test', credential);
    if (typeof raw.ok !== 'boolean') throw this.error('ERR_CONNECTOR_BAD_RESPONSE', 'test', 'the program answered without ok: true|false', false);
    return { ok: raw.ok, evidence: sanitizeEvidence(raw.evidence, secrets) };
  }

  async revoke(ctx: ConnectorContext, old: RevokeTarget): Promise<StepEvidence> {
    const { raw, secrets } = await this.run(ctx, 'revoke', old);
    return sanitizeEvidence(raw.evidence, secrets);
  }

  private error(code: ConstructorParameters<typeof ConnectorError>[0], step: ConnectorStep, message: string, retryable: boolean): ConnectorError {
    return new ConnectorError(code, `command connector, ${step}: ${message}`, { connector: this.type, step, retryable });
  }

  private async run(ctx: ConnectorContext, step: ConnectorStep, credential?: RevokeTarget): Promise<StepAnswer> {
    const problems = validateCommandSettings(ctx.settings, this.#programs ?? NO_PROGRAMS);
    if (problems.length > 0) {
      throw new ConnectorError('ERR_CONNECTOR_SETTINGS_INVALID', `command connector: ${problems.join('; ')}`, {
        connector: this.type,
        step,
        retryable: false,
      });
    }
    const settings = ctx.settings as unknown as CommandSettings;
    // Checked before any secret is read: a refused program learns nothing.
    let program: PreparedProgram;
    try {
      program = await (this.#programs ?? NO_PROGRAMS).prepare(settings.program, settings.args ?? []);
    } catch (error) {
      if (!(error instanceof ProgramRefusedError)) throw error;
      throw new ConnectorError('ERR_CONNECTOR_PROGRAM_REFUSED', `command connector, ${step}: ${error.message}`, { connector: this.type, step, retryable: false });
    }
    const handed: Record<string, CredentialValue> = {};
    for (const [name, path] of Object.entries(settings.secrets ?? {})) handed[name] = await ctx.readSecret(path);
    const secrets = secretStrings(credential?.value, ...Object.values(handed));
    const input = JSON.stringify({
      step,
      runId: ctx.runId,
      settings: settings.config ?? {},
      secrets: handed,
      ...(credential ? { credential } : {}),
    });
    const timeoutMs = settings.timeout ? tryParseDuration(settings.timeout)! : DEFAULT_COMMAND_TIMEOUT_MS;
    const outcome = await runProgram(program, settings.env ?? {}, input, timeoutMs, ctx.signal, { KEYSMITH_STEP: step, KEYSMITH_RUN_ID: ctx.runId });
    const stderr = tail(scrubText(outcome.stderr, secrets), 300);
    const withStderr = (message: string): string => (stderr ? `${message}; stderr: ${stderr}` : message);
    if (outcome.spawnError) {
      throw this.error('ERR_CONNECTOR_FAILED', step, `cannot start program "${settings.program}": ${outcome.spawnError}`, false);
    }
    if (outcome.aborted) throw this.error('ERR_CONNECTOR_FAILED', step, 'the step was cancelled', true);
    if (outcome.timedOut) {
      throw this.error('ERR_CONNECTOR_TIMEOUT', step, withStderr(`the program did not finish within ${timeoutMs} ms and was killed`), true);
    }
    if (outcome.code !== 0) {
      const how = outcome.code === null ? `was killed by ${outcome.signal}` : `exited with status ${outcome.code}`;
      throw this.error('ERR_CONNECTOR_FAILED', step, withStderr(`the program ${how}`), outcome.code === EXIT_TEMPFAIL);
    }
    if (outcome.stdoutTooLarge) throw this.error('ERR_CONNECTOR_BAD_RESPONSE', step, 'the program wrote more than 1 MiB', false);
    let raw: unknown;
    try {
      raw = JSON.parse(outcome.stdout);
    } catch {
      throw this.error('ERR_CONNECTOR_BAD_RESPONSE', step, withStderr('the program did not answer one JSON object on standard output'), false);
    }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      throw this.error('ERR_CONNECTOR_BAD_RESPONSE', step, 'the program answered JSON that is not an object', false);
    }
    return { raw: raw as Record<string, unknown>, secrets };
  }
}

export interface ProgramOutcome {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stdoutTooLarge: boolean;
  readonly stderr: string;
  readonly timedOut: boolean;
  readonly aborted: boolean;
  readonly spawnError?: string;
}

/**
 * Runs a prepared (registered and hash-checked) program with `input` on standard input and a
 * minimal environment (never the server's own), killing its whole process group on timeout or
 * abort. Used by the connector's steps and by the rotation engine's command deploy hook.
 */
export function runProgram(
  program: PreparedProgram,
  programEnv: Readonly<Record<string, string>>,
  input: string,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  extraEnv: Record<string, string>,
): Promise<ProgramOutcome> {
  return new Promise((resolve) => {
    const env: Record<string, string> = { ...programEnv, ...extraEnv };
    for (const name of ['PATH', 'LANG', 'SYSTEMROOT']) {
      const value = process.env[name];
      if (value !== undefined && env[name] === undefined) env[name] = value;
    }
    // detached: the child leads its own process group, so a timeout kills its children too.
    const child = spawn(program.command, [...program.args], { shell: false, detached: true, stdio: 'pipe', env });
    const stdout: Buffer[] = [];
    let stdoutBytes = 0;
    let stdoutTooLarge = false;
    let stderr = '';
    let timedOut = false;
    let aborted = false;
    let settled = false;

    let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    const killGroup = (): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
      // A descendant that left the group (setsid) may hold stdout open forever: stop waiting
      // for 'close' a moment after the kill.
      setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish(exited ?? { code: null, signal: 'SIGKILL' });
      }, KILL_GRACE_MS).unref();
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, timeoutMs);
    const onAbort = (): void => {
      aborted = true;
      killGroup();
    };
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });

    const finish = (outcome: Omit<ProgramOutcome, 'stdout' | 'stderr' | 'stdoutTooLarge' | 'timedOut' | 'aborted'>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve({ ...outcome, stdout: Buffer.concat(stdout).toString('utf8'), stdoutTooLarge, stderr, timedOut, aborted });
    };

    child.stdout.on('data', (chunk: Buffer) => {
      stdoutBytes += chunk.length;
      if (stdoutBytes > MAX_STDOUT) stdoutTooLarge = true;
      else stdout.push(chunk);
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-MAX_STDERR_KEPT);
    });
    child.on('error', (error: NodeJS.ErrnoException) => finish({ code: null, signal: null, spawnError: error.code ?? 'spawn failed' }));
    child.on('exit', (code, sig) => {
      exited = { code, signal: sig };
    });
    // 'close' waits for stdio to end; a killed group closes them all.
    child.on('close', (code, sig) => finish({ code, signal: sig }));
    child.stdin.on('error', () => undefined); // the program may exit without reading its input
    child.stdin.end(input);
  });
}
