/**
 * The server configuration file (`keysmith.yaml` in the data directory, or `--config FILE` /
 * KEYSMITH_CONFIG): what only the operator decides. It holds every KEYSMITH_* server setting
 * under a readable name (config-settings.ts), the program registry (`programs`) and the egress
 * allowlist (`egress.allow`). Every problem names `FILE:LINE:COL`, unknown keys included, as
 * compilers do. The file must be the operator's alone: one that group or others can read or
 * write is refused (it may hold the PKCS#11 PIN or the database password, and whoever can write
 * it chooses which programs the server runs).
 */
import { readFileSync, statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Node, type Pair, type YAMLMap } from 'yaml';
import { PROGRAM_NAME_RE, parseEgressRule, sha256Hex, type ProgramConfig } from '../outbound/index.js';
import { ConfigError } from './defaults.js';
import { FILE_ONLY_SECTIONS, SETTINGS, settingText, type SettingSpec } from './config-settings.js';

export const CONFIG_FILE_NAME = 'keysmith.yaml';
const MAX_CONFIG_BYTES = 256 * 1024;

/** A bad configuration file: every problem as `FILE:LINE:COL: message`. */
export class ConfigFileError extends ConfigError {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigFileError';
    this.problems = problems;
  }
}

export interface ConfigFile {
  readonly path: string;
  /** The settings the file gives, as the environment variables they stand for. */
  readonly env: Readonly<Record<string, string>>;
  readonly programs: readonly ProgramConfig[];
  readonly egress: { readonly allow: readonly string[] };
}

/** File access, injected so tests can check modes and hashes without a real binary. */
export interface ConfigFileIO {
  readonly readText: (path: string) => string;
  readonly readBytes: (path: string) => Buffer;
  /** Permission bits (`mode & 0o777`), or undefined when the file does not exist. */
  readonly mode: (path: string) => number | undefined;
}

export const realConfigFileIO: ConfigFileIO = {
  readText: (path) => readFileSync(path, 'utf8'),
  readBytes: (path) => readFileSync(path),
  mode: (path) => {
    try {
      return statSync(path).mode & 0o777;
    } catch {
      return undefined;
    }
  },
};

interface Locator {
  at(node: Node | null | undefined): string;
}

/** Reads and checks a configuration file; throws ConfigFileError listing every problem. */
export function loadConfigFile(path: string, io: ConfigFileIO = realConfigFileIO): ConfigFile {
  const mode = io.mode(path);
  if (mode === undefined) throw new ConfigFileError([`${path}: the configuration file does not exist`]);
  if ((mode & 0o077) !== 0) {
    throw new ConfigFileError([`${path}: the configuration file is open to group or others (mode ${mode.toString(8).padStart(4, '0')}); run "chmod 600 ${path}" and start again`]);
  }
  let text: string;
  try {
    text = io.readText(path);
  } catch (error) {
    throw new ConfigFileError([`${path}: cannot be read (${(error as NodeJS.ErrnoException).code ?? 'unreadable'})`]);
  }
  return parseConfigText(path, text, io);
}

/** Parses the file's text (`path` only names it in messages, and anchors nothing else). */
export function parseConfigText(path: string, text: string, io: Pick<ConfigFileIO, 'readBytes' | 'mode'> = realConfigFileIO): ConfigFile {
  if (Buffer.byteLength(text) > MAX_CONFIG_BYTES) throw new ConfigFileError([`${path}:1:1: the file is larger than ${MAX_CONFIG_BYTES} bytes`]);
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, strict: true });
  const locate = (offset: number | undefined): string => {
    const { line, col } = lineCounter.linePos(offset ?? 0);
    return `${path}:${line}:${col}`;
  };
  const loc: Locator = { at: (node) => locate(node?.range?.[0]) };
  if (doc.errors.length > 0) throw new ConfigFileError(doc.errors.map((error) => `${locate(error.pos[0])}: ${error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`));
  const problems: string[] = [];
  const env: Record<string, string> = {};
  let programs: ProgramConfig[] = [];
  let allow: string[] = [];
  const root = doc.contents;
  if (root === null || (isScalar(root) && root.value === null)) return { path, env, programs, egress: { allow } };
  if (!isMap(root)) throw new ConfigFileError([`${loc.at(root)}: the configuration must be a map of settings`]);
  const sections = new Set(SETTINGS.map((spec) => spec.key.split('.')[0]!));
  for (const pair of root.items) {
    const key = keyName(pair);
    if (key === 'programs') programs = readPrograms(pair.value as Node | null, loc, problems, io);
    else if (key === 'egress') allow = readEgress(pair.value as Node | null, loc, problems);
    else if (sections.has(key)) readSettings(pair, key, loc, problems, env);
    else problems.push(`${loc.at(pair.key as Node)}: unknown setting "${key.slice(0, 60)}"; known: ${[...sections, ...FILE_ONLY_SECTIONS].join(', ')}`);
  }
  if (problems.length > 0) throw new ConfigFileError(problems);
  return { path, env, programs, egress: { allow } };
}

function keyName(pair: Pair): string {
  return isScalar(pair.key) ? String(pair.key.value) : '';
}

/** Walks a section of settings (`keys: { maxTtl: 90d }`) against the table. */
function readSettings(pair: Pair, prefix: string, loc: Locator, problems: string[], env: Record<string, string>): void {
  const spec = SETTINGS.find((candidate) => candidate.key === prefix);
  const value = pair.value as Node | null;
  if (spec) {
    readValue(spec, value, loc, problems, env);
    return;
  }
  if (!isMap(value)) {
    problems.push(`${loc.at(value ?? (pair.key as Node))}: ${prefix} must be a map`);
    return;
  }
  for (const inner of (value as YAMLMap).items) {
    const key = `${prefix}.${keyName(inner)}`;
    const known = SETTINGS.some((candidate) => candidate.key === key || candidate.key.startsWith(`${key}.`));
    if (!known) {
      const siblings = [...new Set(SETTINGS.filter((candidate) => candidate.key.startsWith(`${prefix}.`)).map((candidate) => candidate.key.slice(prefix.length + 1).split('.')[0]!))];
      problems.push(`${loc.at(inner.key as Node)}: unknown setting "${key.slice(0, 80)}"; ${prefix} holds ${siblings.join(', ')}`);
      continue;
    }
    readSettings(inner, key, loc, problems, env);
  }
}

function readValue(spec: SettingSpec, node: Node | null, loc: Locator, problems: string[], env: Record<string, string>): void {
  let value = isScalar(node) ? node.value : node === null ? null : undefined;
  // `pin: 0042` or `token: 2024` read as numbers: a text setting keeps the text as written.
  if ((spec.kind === 'string' || spec.kind === 'path') && isScalar(node) && typeof value === 'number' && typeof node.source === 'string') value = node.source;
  const checked = settingText(spec, value);
  if ('problem' in checked) problems.push(`${loc.at(node)}: ${checked.problem}`);
  else env[spec.env] = checked.text;
}

const PROGRAM_FIELDS = new Set(['name', 'path', 'sha256', 'args', 'allowArgs']);

/** `programs` as a list of `{ name, path, … }` or a map of name → `{ path, … }`. */
function readPrograms(node: Node | null, loc: Locator, problems: string[], io: Pick<ConfigFileIO, 'readBytes' | 'mode'>): ProgramConfig[] {
  const entries: Array<{ name: string | undefined; nameNode: Node | null; body: Node | null }> = [];
  if (isSeq(node)) {
    for (const item of node.items as Array<Node | null>) {
      const nameNode = isMap(item) ? ((item.items.find((pair) => keyName(pair) === 'name')?.value as Node | null) ?? null) : null;
      entries.push({ name: isScalar(nameNode) && typeof nameNode.value === 'string' ? nameNode.value : undefined, nameNode: nameNode ?? item, body: item });
    }
  } else if (isMap(node)) {
    for (const pair of node.items) entries.push({ name: keyName(pair), nameNode: pair.key as Node, body: pair.value as Node | null });
  } else if (node !== null && !(isScalar(node) && node.value === null)) {
    problems.push(`${loc.at(node)}: programs must be a list of { name, path, sha256, args, allowArgs }, or a map of name to { path, sha256, args, allowArgs }`);
    return [];
  }
  const programs: ProgramConfig[] = [];
  const seen = new Set<string>();
  for (const { name, nameNode, body } of entries) {
    const before = problems.length;
    if (!isMap(body)) {
      problems.push(`${loc.at(body ?? nameNode)}: a program must be a map with path and sha256`);
      continue;
    }
    const field = (key: string) => body.items.find((pair) => keyName(pair) === key);
    for (const pair of body.items) {
      const key = keyName(pair);
      if (!PROGRAM_FIELDS.has(key) || (key === 'name' && !isSeq(node))) problems.push(`${loc.at(pair.key as Node)}: unknown program field "${key.slice(0, 60)}"; a program has ${isSeq(node) ? 'name, ' : ''}path, sha256, args, allowArgs`);
    }
    if (name === undefined || !PROGRAM_NAME_RE.test(name)) problems.push(`${loc.at(nameNode ?? body)}: a program name is lowercase letters, digits, ".", "_" and "-", at most 63 characters`);
    else if (seen.has(name)) problems.push(`${loc.at(nameNode)}: program "${name}" is registered twice`);
    else seen.add(name);
    const scalar = (key: string): { value: unknown; node: Node | null } => {
      const pair = field(key);
      const valueNode = (pair?.value as Node | null | undefined) ?? null;
      // A hash of digits only (or 1e5…) reads as a number: keep the text as written.
      const text = isScalar(valueNode) && typeof valueNode.value === 'number' && typeof valueNode.source === 'string' ? valueNode.source : undefined;
      return { value: isScalar(valueNode) ? (text ?? valueNode.value) : valueNode === null ? undefined : valueNode, node: valueNode ?? (pair?.key as Node | undefined) ?? body };
    };
    const path = scalar('path');
    const sha = scalar('sha256');
    if (typeof path.value !== 'string' || !isAbsolute(path.value)) problems.push(`${loc.at(path.node)}: path must be the absolute path of the program`);
    if (typeof sha.value !== 'string' || !/^[0-9a-fA-F]{64}$/.test(sha.value)) problems.push(`${loc.at(sha.node)}: sha256 must be the file's SHA-256 in hex (sha256sum FILE)`);
    const args = stringList(field('args'), 'args', loc, problems);
    const allowArgs = stringList(field('allowArgs'), 'allowArgs', loc, problems);
    allowArgs.forEach((pattern, index) => {
      try {
        new RegExp(`^(?:${pattern})$`, 'u');
      } catch {
        problems.push(`${loc.at(((field('allowArgs')!.value as Node) as { items: Node[] }).items[index])}: allowArgs.${index} is not a valid regular expression`);
      }
    });
    if (problems.length > before || typeof path.value !== 'string' || typeof sha.value !== 'string') continue;
    // The file is checked now, so a wrong hash stops the start rather than every run later.
    const mode = io.mode(path.value);
    if (mode === undefined) {
      problems.push(`${loc.at(path.node)}: program "${name}": ${path.value} does not exist`);
      continue;
    }
    if ((mode & 0o022) !== 0) {
      problems.push(`${loc.at(path.node)}: program "${name}": ${path.value} is writable by group or others (mode ${mode.toString(8).padStart(4, '0')}), so anyone could replace it`);
      continue;
    }
    let actual: string;
    try {
      actual = sha256Hex(io.readBytes(path.value));
    } catch (error) {
      problems.push(`${loc.at(path.node)}: program "${name}": ${path.value} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'unreadable'})`);
      continue;
    }
    if (actual !== sha.value.toLowerCase()) {
      problems.push(`${loc.at(sha.node)}: program "${name}": sha256 does not match ${path.value} (the file has ${actual})`);
      continue;
    }
    programs.push({ name: name!, path: path.value, sha256: sha.value.toLowerCase(), args, ...(allowArgs.length > 0 ? { allowArgs } : {}) });
  }
  return programs;
}

function stringList(pair: Pair | undefined, what: string, loc: Locator, problems: string[]): string[] {
  if (pair === undefined) return [];
  const node = pair.value as Node | null;
  if (!isSeq(node) || node.items.some((item) => !isScalar(item) || typeof item.value !== 'string')) {
    problems.push(`${loc.at(node ?? (pair.key as Node))}: ${what} must be a list of strings`);
    return [];
  }
  return node.items.map((item) => String((item as { value: unknown }).value));
}

function readEgress(node: Node | null, loc: Locator, problems: string[]): string[] {
  if (node === null || (isScalar(node) && node.value === null)) return [];
  if (!isMap(node)) {
    problems.push(`${loc.at(node)}: egress must be a map with an allow list`);
    return [];
  }
  const allow: string[] = [];
  for (const pair of node.items) {
    if (keyName(pair) !== 'allow') {
      problems.push(`${loc.at(pair.key as Node)}: unknown setting "egress.${keyName(pair).slice(0, 60)}"; egress holds allow`);
      continue;
    }
    const list = pair.value as Node | null;
    if (!isSeq(list)) {
      problems.push(`${loc.at(list ?? (pair.key as Node))}: egress.allow must be a list of host:port entries`);
      continue;
    }
    for (const item of list.items as Array<Node | null>) {
      const value = isScalar(item) ? item.value : undefined;
      // `host:443` unquoted can read as a base-60 number in YAML 1.1; the default 1.2 schema keeps it a string.
      const rule = typeof value === 'string' ? parseEgressRule(value) : 'an entry must be a string such as api.acme.com:443';
      if (typeof rule === 'string') problems.push(`${loc.at(item)}: egress.allow: ${rule}`);
      else allow.push(rule.text);
    }
  }
  return allow;
}
