/**
 * `keysmith run --secret NAME=path[@stage|@version][#field] … -- command args…`: starts a
 * command with secrets in its environment and masks their values in what it prints.
 *
 * Every secret is read before anything starts, so a failure starts nothing (exit 1). The child
 * inherits stdin and the rest of the environment; its stdout and stderr pass through a masking
 * transform; SIGINT and SIGTERM are passed on to it; keysmith exits with its status (128 + the
 * signal number if a signal ended it; 127/126 if it could not be started, as shells do).
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { finished } from 'node:stream/promises';
import { KeysmithApiError } from '../../sdk/index.js';
import { RefusedError, UsageError, optionList, type Command, type CommandContext } from '../command.js';
import { clientFrom, clientOptions } from '../client.js';
import { maskingTransform } from '../mask.js';
import { isStageName, secretPathProblem } from './secrets.js';

const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

export interface SecretSpec {
  /** The environment variable. */
  readonly name: string;
  readonly path: string;
  readonly stage?: string;
  readonly version?: number;
  /** For a JSON object value: the field whose value the variable gets. */
  readonly field?: string;
  /** As given, for messages. */
  readonly text: string;
}

/**
 * `NAME=path`, `NAME=path@stage`, `NAME=path@3` (version 3), each optionally followed by
 * `#field` to pick a field of a JSON object value: `DB_PASS=payments/db@pending#password`.
 */
export function parseSecretSpec(text: string): SecretSpec {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new UsageError(`--secret "${text.slice(0, 80)}" is not NAME=path (for example --secret STRIPE_KEY=payments/stripe/api-key)`);
  const name = text.slice(0, eq);
  if (!ENV_NAME_RE.test(name)) throw new UsageError(`--secret: "${name.slice(0, 40)}" is not an environment variable name (letters, digits and _, not starting with a digit)`);
  let rest = text.slice(eq + 1);
  let field: string | undefined;
  const hash = rest.indexOf('#');
  if (hash !== -1) {
    field = rest.slice(hash + 1);
    rest = rest.slice(0, hash);
    if (field === '') throw new UsageError(`--secret ${name}: the field after "#" is empty`);
  }
  let stage: string | undefined;
  let version: number | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    const selector = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (/^[0-9]+$/.test(selector)) {
      if (!/^[1-9][0-9]{0,8}$/.test(selector)) throw new UsageError(`--secret ${name}: "@${selector.slice(0, 20)}" is not a version number`);
      version = Number(selector);
    } else if (isStageName(selector)) {
      stage = selector;
    } else {
      throw new UsageError(`--secret ${name}: "@${selector.slice(0, 40)}" is neither a version number nor a stage name`);
    }
  }
  const problem = secretPathProblem(rest);
  if (problem !== undefined) throw new UsageError(`--secret ${name}: ${problem}`);
  return { name, path: rest, text, ...(stage !== undefined ? { stage } : {}), ...(version !== undefined ? { version } : {}), ...(field !== undefined ? { field } : {}) };
}

/** Every `--secret`, checked; a variable may be set once. */
export function parseSecretSpecs(list: readonly string[]): SecretSpec[] {
  const specs = list.map(parseSecretSpec);
  const seen = new Set<string>();
  for (const spec of specs) {
    if (seen.has(spec.name)) throw new UsageError(`--secret ${spec.name} is given more than once`);
    seen.add(spec.name);
  }
  return specs;
}

/**
 * The string a variable gets from a value read: a string as it is; from an object only with
 * `#field`, whose value must be a string, number or boolean (numbers and booleans as JSON writes
 * them, for ports and flags in database credentials).
 */
export function environmentValue(spec: SecretSpec, value: unknown): string {
  const where = `${spec.path}${spec.field !== undefined ? `#${spec.field}` : ''}`;
  let picked: unknown = value;
  if (spec.field !== undefined) {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new RefusedError(`--secret ${spec.name}: ${spec.path} holds a string, not a JSON object, so it has no field "${spec.field}"`, 'not_an_object');
    }
    if (!Object.hasOwn(value, spec.field)) throw new RefusedError(`--secret ${spec.name}: ${spec.path} has no field "${spec.field}"`, 'field_not_found');
    picked = (value as Record<string, unknown>)[spec.field];
  } else if (typeof value !== 'string') {
    throw new RefusedError(`--secret ${spec.name}: ${spec.path} holds a JSON object; pick one field with ${spec.name}=${spec.path}#FIELD`, 'not_a_string');
  }
  if (typeof picked === 'number' || typeof picked === 'boolean') picked = String(picked);
  if (typeof picked !== 'string') throw new RefusedError(`--secret ${spec.name}: ${where} is not a string, number or boolean`, 'not_a_string');
  if (picked.includes('\0')) throw new RefusedError(`--secret ${spec.name}: ${where} contains a NUL character, which no environment variable can hold`, 'not_a_string');
  return picked;
}

/** The exit status of a shell for a child that ended with `code` or was killed by `signal`. */
export function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  const number = signal === null ? undefined : constants.signals[signal];
  return number === undefined ? 1 : 128 + number;
}

function selectorText(spec: SecretSpec): string {
  return spec.version !== undefined ? `@${spec.version}` : `@${spec.stage ?? 'current'}`;
}

async function readSecrets(ctx: CommandContext, specs: readonly SecretSpec[]): Promise<Map<string, string>> {
  const client = clientFrom(ctx);
  const values = await Promise.all(
    specs.map(async (spec) => {
      try {
        const secret = await client.readSecret(spec.path, { ...(spec.stage !== undefined ? { stage: spec.stage } : {}), ...(spec.version !== undefined ? { version: spec.version } : {}) });
        return environmentValue(spec, secret.value);
      } catch (error) {
        if (error instanceof RefusedError) throw error;
        const code = error instanceof KeysmithApiError ? error.error : 'refused';
        const why = error instanceof Error ? error.message : String(error);
        throw new RefusedError(`cannot read ${spec.path}${selectorText(spec)} for ${spec.name}: ${why}; nothing was started`, code);
      }
    }),
  );
  return new Map(specs.map((spec, i) => [spec.name, values[i]!]));
}

export const runCommand: Command = {
  name: 'run',
  summary: 'Run a command with secrets in its environment, masking their values in its output',
  usage: '--secret NAME=path[@stage|@version][#field] [--secret …] -- command [args…]',
  options: { ...clientOptions, secret: { type: 'string', multiple: true } },
  positionals: { min: 0, max: Number.MAX_SAFE_INTEGER },
  passThrough: true,
  async run(ctx) {
    if (ctx.positionals.length > 0) throw new UsageError(`put the command after "--", for example: keysmith run --secret TOKEN=ci/token -- ${ctx.positionals[0]!.slice(0, 40)} …`);
    const specs = parseSecretSpecs(optionList(ctx, 'secret') ?? []);
    if (specs.length === 0) throw new UsageError('give at least one --secret NAME=path');
    const [command, ...args] = ctx.rest;
    if (command === undefined || command === '') throw new UsageError('no command to run: give it after "--"');

    let interrupted: NodeJS.Signals | undefined;
    void ctx.stopSignal.then((signal) => (interrupted = signal as NodeJS.Signals));
    const env = await readSecrets(ctx, specs);
    // Ctrl-C while the secrets were being read: start nothing, and end as the signal would have.
    if (interrupted !== undefined) return { data: { exitCode: exitStatus(null, interrupted), signal: interrupted }, exitCode: exitStatus(null, interrupted), output: 'none' };
    const child = spawn(command, args, { env: { ...ctx.env, ...Object.fromEntries(env) }, stdio: ['inherit', 'pipe', 'pipe'] });
    const started = new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const stopForwarding =
      ctx.onSignal?.((signal) => child.kill(signal)) ??
      ((): (() => void) => {
        void ctx.stopSignal.then((signal) => child.kill(signal as NodeJS.Signals));
        return () => undefined;
      })();
    try {
      try {
        await started;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        const status = code === 'ENOENT' ? 127 : 126;
        throw new RefusedError(`cannot start "${command.slice(0, 80)}": ${code === 'ENOENT' ? 'command not found' : (code ?? 'error')}`, code === 'ENOENT' ? 'command_not_found' : 'command_not_started', undefined, status);
      }
      const values = [...env.values()];
      const outputs = [
        [child.stdout, ctx.stdout],
        [child.stderr, ctx.stderr],
      ] as const;
      const flushed = outputs.map(async ([from, to]) => {
        const masked = from.pipe(maskingTransform(values));
        // If our own output goes away (a closed pipe), keep draining the child so it never blocks.
        const drain = () => {
          masked.unpipe(to);
          masked.resume();
        };
        to.on('error', drain);
        masked.pipe(to, { end: false });
        try {
          await finished(masked);
        } finally {
          to.off('error', drain);
        }
      });
      const [{ code, signal }] = await Promise.all([exited, ...flushed]);
      return { data: { exitCode: exitStatus(code, signal), signal }, exitCode: exitStatus(code, signal), output: 'none' };
    } finally {
      stopForwarding();
    }
  },
};
