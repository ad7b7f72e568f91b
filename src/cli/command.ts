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
}

export interface CommandContext extends CommandIO {
  readonly options: OptionValues;
  readonly positionals: string[];
  readonly json: boolean;
  /** Resolves when the user asks the process to stop (SIGINT/SIGTERM). */
  readonly stopSignal: Promise<string>;
}

export interface CommandResult<T = unknown> {
  readonly data: T;
  /** What a person sees; defaults to the JSON form. */
  readonly text?: string;
  /** 0 unless the command reports a refused outcome (1). */
  readonly exitCode?: 0 | 1;
}

export interface Command {
  /** `keys create`, `serve`, … */
  readonly name: string;
  readonly summary: string;
  /** Usage line after the name, e.g. `<id> [--overlap 24h]`. */
  readonly usage: string;
  readonly options: OptionSpecs;
  readonly positionals: { readonly min: number; readonly max: number; readonly names?: string };
  run(ctx: CommandContext): Promise<CommandResult>;
}

/** Bad usage: exit 2 with the message and the command's usage. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A refused operation: exit 1. */
export class RefusedError extends Error {
  readonly code: string;
  readonly data: unknown;
  constructor(message: string, code = 'refused', data?: unknown) {
    super(message);
    this.name = 'RefusedError';
    this.code = code;
    this.data = data;
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
