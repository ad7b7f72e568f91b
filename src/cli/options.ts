/** Flag parsers shared by commands: checked here only where it is cheap and certain. */
import { UsageError, optionString, type CommandContext } from './command.js';

/** `--label k=v` (repeatable) into a record; undefined when none were given. */
export function parseLabels(list: readonly string[] | undefined): Record<string, string> | undefined {
  if (list === undefined) return undefined;
  const labels: Record<string, string> = {};
  for (const pair of list) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new UsageError(`--label "${pair.slice(0, 80)}" is not name=value (for example --label team=payments)`);
    const name = pair.slice(0, at);
    if (Object.hasOwn(labels, name)) throw new UsageError(`--label ${name} is given more than once`);
    labels[name] = pair.slice(at + 1);
  }
  return labels;
}

/** A positive whole number flag such as `--limit 20`. */
export function integerOption(ctx: CommandContext, name: string, minimum = 1): number | undefined {
  const text = optionString(ctx, name);
  if (text === undefined) return undefined;
  if (!/^[0-9]{1,9}$/.test(text) || Number(text) < minimum) {
    throw new UsageError(`--${name} must be a whole number of at least ${minimum} (got "${text.slice(0, 20)}")`);
  }
  return Number(text);
}

/** A flag that must be one of a few words, such as `--env live|test`. */
export function oneOf<T extends string>(ctx: CommandContext, name: string, allowed: readonly T[]): T | undefined {
  const value = optionString(ctx, name);
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value)) {
    throw new UsageError(`--${name} must be one of ${allowed.join(', ')} (got "${value.slice(0, 20)}")`);
  }
  return value as T;
}
