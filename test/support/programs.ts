/**
 * Programs for tests of the program registry: a node script written as an executable with a
 * shebang, registered (as an operator would) by its absolute path and SHA-256.
 */
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sha256Hex, type ProgramConfig } from '../../src/outbound/index.js';

export interface TestProgramOptions {
  /** Fixed arguments the registration gives. */
  readonly args?: readonly string[];
  /** Patterns an extra argument from a policy must match. */
  readonly allowArgs?: readonly string[];
}

/** Writes `body` as an executable node program `dir/name` (mode 0700) and registers it under `name`. */
export function writeProgram(dir: string, name: string, body: string, options: TestProgramOptions = {}): ProgramConfig {
  const path = join(dir, name);
  writeFileSync(path, `#!${process.execPath}\n${body}\n`);
  chmodSync(path, 0o700);
  return registerProgram(name, path, options);
}

/** The registration of an existing file, with its hash as it is now. */
export function registerProgram(name: string, path: string, options: TestProgramOptions = {}): ProgramConfig {
  return {
    name,
    path,
    sha256: sha256Hex(readFileSync(path)),
    args: [...(options.args ?? [])],
    ...(options.allowArgs ? { allowArgs: [...options.allowArgs] } : {}),
  };
}
