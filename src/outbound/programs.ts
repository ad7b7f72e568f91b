/**
 * The program registry: the only programs a `command` connector or a command deploy hook may
 * start, declared by the operator (the configuration file's `programs`) by absolute path and
 * SHA-256 of the file, as Vault's plugin catalog does. A policy names a program; its extra
 * arguments must each match one of the program's `allowArgs` patterns in full. The file is
 * hashed again before every start, so a binary swapped after registration is never run.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';

export interface ProgramConfig {
  readonly name: string;
  /** Absolute path of the executable. */
  readonly path: string;
  /** SHA-256 of the file, hex. */
  readonly sha256: string;
  /** Arguments always given, before any the policy adds. */
  readonly args: readonly string[];
  /** Patterns (anchored: the whole argument must match) an extra argument from a policy must match; none means no extra arguments. */
  readonly allowArgs?: readonly string[];
}

/** What to spawn: a verified file and its full argument list. */
export interface PreparedProgram {
  readonly command: string;
  readonly args: readonly string[];
}

/** A program that is not registered, or whose file no longer has its registered hash. Never retryable. */
export class ProgramRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProgramRefusedError';
  }
}

export interface ProgramRegistry {
  readonly names: readonly string[];
  /** Problems with a policy naming `name` with extra `args` (unknown name, an argument not allowed). */
  checkUse(name: string, args: readonly string[]): string[];
  /** Hashes the file again and returns what to spawn; throws ProgramRefusedError. */
  prepare(name: string, args: readonly string[]): Promise<PreparedProgram>;
}

export interface ProgramRegistryDeps {
  readonly readFile?: (path: string) => Promise<Buffer>;
}

export const PROGRAM_NAME_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function createProgramRegistry(programs: readonly ProgramConfig[], deps: ProgramRegistryDeps = {}): ProgramRegistry {
  const read = deps.readFile ?? ((path: string) => readFile(path));
  const byName = new Map(programs.map((program) => [program.name, { program, patterns: (program.allowArgs ?? []).map((re) => new RegExp(`^(?:${re})$`, 'u')) }]));
  const checkUse = (name: string, args: readonly string[]): string[] => {
    const entry = byName.get(name);
    if (!entry) {
      return [byName.size === 0 ? `program "${name.slice(0, 64)}" cannot run: no program is registered in the server configuration` : `program "${name.slice(0, 64)}" is not registered (registered: ${[...byName.keys()].join(', ')})`];
    }
    const problems: string[] = [];
    args.forEach((arg, index) => {
      if (!entry.patterns.some((pattern) => pattern.test(arg))) {
        problems.push(entry.patterns.length === 0 ? `args.${index} is not allowed: program "${name}" takes no arguments from a policy` : `args.${index} is not allowed for program "${name}"`);
      }
    });
    return problems;
  };
  return {
    names: [...byName.keys()],
    checkUse,
    async prepare(name, args) {
      const problems = checkUse(name, args);
      if (problems.length > 0) throw new ProgramRefusedError(problems.join('; '));
      const { program } = byName.get(name)!;
      let bytes: Buffer;
      try {
        bytes = await read(program.path);
      } catch (error) {
        throw new ProgramRefusedError(`program "${name}": its file cannot be read (${(error as NodeJS.ErrnoException).code ?? 'unreadable'})`);
      }
      if (sha256Hex(bytes) !== program.sha256.toLowerCase()) {
        throw new ProgramRefusedError(`program "${name}": the file at its registered path no longer has its registered SHA-256; it was not started`);
      }
      return { command: program.path, args: [...program.args, ...args] };
    },
  };
}

/** No programs: every use is refused (the default when the configuration registers none). */
export const NO_PROGRAMS: ProgramRegistry = createProgramRegistry([]);
