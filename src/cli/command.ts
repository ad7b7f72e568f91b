/**
 * The shape of a CLI command: a function that returns data, rendered as text for people or as
 * JSON with `--json`. Commands never exit the process; `main` does, in one place.
 */
import type { ParseArgsConfig } from 'node:util';

export type OptionSpecs = NonNullable<ParseArgsConfig['options']>;
export type OptionValues = Record<string, string | boolean | string[] | boolean[] | undefined>;

export interface CommandIO {
  readonly env: NodeJS.ProcessEnv;
  readonly stdout: NodeJS.WritableStream & { isTTY?: boolean };
  readonly stderr: NodeJS.WritableStream & { isTTY?: boolean };
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  /**
   * Calls `listener` on every SIGINT/SIGTERM until the returned function is called, for a
   * command that passes signals on (`run`); absent where there is no process to listen to.
   */
  readonly onSignal?: (listener: (signal: NodeJS.Signals) => void) => () => void;
}

export interface CommandContext extends CommandIO {
  readonly options: OptionValues;
  readonly positionals: string[];
  readonly json: boolean;
  /** The arguments after `--`, untouched, for a command with `passThrough`; empty otherwise. */
  readonly rest: readonly string[];
  /** Resolves when the user asks the process to stop (SIGINT/SIGTERM). */
  readonly stopSignal: Promise<string>;
}

export interface CommandResult<T = unknown> {
  readonly data: T;
  /** What a person sees; defaults to the JSON form. */
  readonly text?: string;
  /** 0 unless the command reports a refused outcome (1), or passes on a child's status (`run`). */
  readonly exitCode?: number;
  /**
   * `rendered` (the default): `text` or JSON, with a final newline. `raw`: `text` exactly as
   * given, no newline added (a secret value, where every byte matters); `--json` still prints the
   * data. `none`: nothing at all, since the output was a child's own.
   */
  readonly output?: 'rendered' | 'raw' | 'none';
}

export interface Command {
  /** `keys create`, `serve`, … */
  readonly name: string;
  readonly summary: string;
  /** Usage line after the name, e.g. `<id> [--overlap 24h]`. */
  readonly usage: string;
  readonly options: OptionSpecs;
  readonly positionals: { readonly min: number; readonly max: number; readonly names?: string };
  /** Arguments after `--` are not parsed but handed over as `ctx.rest` (a command line to start). */
  readonly passThrough?: boolean;
  run(ctx: CommandContext): Promise<CommandResult>;
}

/** Bad usage: exit 2 with the message and the command's usage. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A refused operation: exit 1, or the conventional status of a command that could not start (126, 127). */
export class RefusedError extends Error {
  readonly code: string;
  readonly data: unknown;
  readonly exitCode: number;
  constructor(message: string, code = 'refused', data?: unknown, exitCode = 1) {
    super(message);
    this.name = 'RefusedError';
    this.code = code;
    this.data = data;
    this.exitCode = exitCode;
  }
}

export function optionString(ctx: CommandContext, name: string): string | undefined {
  const value = ctx.options[name];
  return typeof value === 'string' ? value : undefined;
}

export function optionList(ctx: CommandContext, name: string): string[] | undefined {
  const value = ctx.options[name];
  if (value === undefined) return undefined;
  return (Array.isArray(value) ? value : [value]).map(String);
}

export function optionFlag(ctx: CommandContext, name: string): boolean {
  return ctx.options[name] === true;
}
