/**
 * Runs one CLI invocation and returns its exit code: 0 success, 1 refused, 2 bad usage.
 * Parsing, dispatch, rendering and error mapping live here; the process exits only in main.
 */
import { parseArgs } from 'node:util';
import { KeysmithApiError, KeysmithConnectionError } from '../sdk/index.js';
import { MasterKeyError } from '../crypto/index.js';
import { ConfigError, StartRefusedError } from '../app/defaults.js';
import { isAppError } from '../shared/errors.js';
import { redactKeys } from '../shared/redact.js';
import { RefusedError, UsageError, type Command, type CommandIO } from './command.js';
import { COMMANDS } from './commands/index.js';

export interface RunOptions extends CommandIO {
  readonly stopSignal?: Promise<string>;
  readonly commands?: readonly Command[];
}

export async function runCli(args: readonly string[], io: RunOptions): Promise<number> {
  let argv = args;
  const commands = io.commands ?? COMMANDS;
  // What follows `--` belongs to a command line `run` starts, never to keysmith.
  const dashes = argv.indexOf('--');
  const head = dashes === -1 ? argv : argv.slice(0, dashes);
  const json = head.includes('--json');
  const write = (stream: NodeJS.WritableStream, text: string) => stream.write(text.endsWith('\n') ? text : `${text}\n`);
  const fail = (exitCode: number, code: string, message: string, extra: Record<string, unknown> = {}) => {
    if (json) write(io.stderr, JSON.stringify({ error: { code, message: redactKeys(message), ...extra } }));
    else write(io.stderr, `Error: ${redactKeys(message)}`);
    return exitCode;
  };

  // `--json` may come before the command words.
  const leading = head.findIndex((arg) => arg !== '--json');
  if (leading > 0) argv = [...argv.slice(leading), ...argv.slice(0, leading)];
  const words = argv.slice(0, dashes === -1 ? argv.length : argv.indexOf('--')).filter((arg) => !arg.startsWith('-'));
  if (argv.length === 0 || argv[0] === 'help' || argv[0] === '--help' || argv[0] === '-h') {
    write(io.stdout, helpText(commands));
    return argv.length === 0 ? 2 : 0;
  }
  if (argv[0] === '--version' || argv[0] === 'version') {
    write(io.stdout, '0.1.0');
    return 0;
  }
  const command =
    commands.find((c) => c.name === `${words[0]} ${words[1]}` && argv.indexOf(words[0]!) === 0) ??
    commands.find((c) => c.name === words[0] && argv.indexOf(words[0]!) === 0);
  if (!command) {
    return fail(2, 'usage', `unknown command "${words.slice(0, 2).join(' ')}"; run "keysmith help" for the list`);
  }
  let rest = argv.slice(command.name.split(' ').length);
  let passed: string[] = [];
  if (command.passThrough && rest.includes('--')) {
    passed = rest.slice(rest.indexOf('--') + 1);
    rest = rest.slice(0, rest.indexOf('--'));
  }
  try {
    let parsed;
    try {
      parsed = parseArgs({
        args: [...rest],
        options: { ...command.options, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
        allowPositionals: true,
        strict: true,
      });
    } catch (error) {
      throw new UsageError(error instanceof Error ? (error.message.split('\n')[0] ?? '').replace(/\. To specify.*$/, '') : String(error));
    }
    if (parsed.values.help) {
      write(io.stdout, `Usage: keysmith ${command.name} ${command.usage}\n\n${command.summary}`);
      return 0;
    }
    const { min, max } = command.positionals;
    if (parsed.positionals.length < min || parsed.positionals.length > max) {
      throw new UsageError(
        parsed.positionals.length < min
          ? `missing ${command.positionals.names ?? 'argument'}`
          : `unexpected argument "${redactKeys(parsed.positionals[max] ?? '')}"`,
      );
    }
    const result = await command.run({
      ...io,
      options: parsed.values as Record<string, string | boolean | string[] | boolean[] | undefined>,
      positionals: parsed.positionals,
      json,
      rest: passed,
      stopSignal: io.stopSignal ?? new Promise<string>(() => undefined),
    });
    if (result.output === 'raw' && !json) io.stdout.write(result.text ?? '');
    else if (result.output !== 'none') write(io.stdout, json ? JSON.stringify(result.data, null, 2) : (result.text ?? JSON.stringify(result.data, null, 2)));
    return result.exitCode ?? 0;
  } catch (error) {
    if (error instanceof UsageError) {
      const code = fail(2, 'usage', error.message);
      if (!json) write(io.stderr, `Usage: keysmith ${command.name} ${command.usage}`);
      return code;
    }
    if (error instanceof KeysmithApiError) {
      const usage = error.status === 400 || error.status === 413 || error.status === 415;
      if (error.status === 401 && !json) write(io.stderr, 'Hint: set KEYSMITH_TOKEN to a management token, or run on the server machine where ./.keysmith/root-token exists');
      return fail(usage ? 2 : 1, error.error, error.message, { status: error.status, category: error.code, ...(error.problem.errors ? { errors: error.problem.errors } : {}) });
    }
    if (error instanceof RefusedError) return fail(error.exitCode, error.code, error.message);
    if (error instanceof KeysmithConnectionError || error instanceof MasterKeyError || error instanceof StartRefusedError) return fail(1, 'refused', error.message);
    if (error instanceof ConfigError) return fail(2, 'usage', error.message, 'problems' in error ? { problems: error.problems } : {});
    if (isAppError(error)) return fail(error.status === 400 ? 2 : 1, error.code, error.message);
    const message = error instanceof Error ? error.message : String(error);
    return fail(1, 'error', message);
  }
}

function helpText(commands: readonly Command[]): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'Usage: keysmith <command> [options] [--json]',
    '',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Environment: KEYSMITH_ADDR (default http://127.0.0.1:7370), KEYSMITH_TOKEN (default: the root token in ./.keysmith)',
    'Exit codes: 0 success, 1 refused, 2 bad usage (run: the status of the command it ran)',
  ].join('\n');
}
