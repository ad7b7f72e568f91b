/**
 * `keysmith secrets …`: the versioned vault. A value never comes from a flag (shell history,
 * `ps`): it is piped on stdin or read from `--value-file`. Paths and stages are checked here
 * where that is cheap and certain; the rest is the server's to judge.
 */
import { readFile } from 'node:fs/promises';
import {
  SECRET_ACTIONS,
  SECRET_PATH_MAX,
  SECRET_PATH_PATTERN,
  SECRET_VALUE_MAX_BYTES,
  STAGE_PATTERN,
  type PutSecretBodyWire,
  type ReadSecretQueryWire,
  type SecretMetadataWire,
  type SecretPageWire,
  type SecretVersionsWire,
} from '../../contract/index.js';
import { RefusedError, UsageError, optionFlag, optionList, optionString, type Command, type CommandContext } from '../command.js';
import { clientFrom, clientOptions } from '../client.js';
import { fields, table } from '../render.js';
import { collectPages } from '../pages.js';
import { integerOption, oneOf, parseLabels } from '../options.js';
import { readAll, stripOneNewline, utf8Text } from '../input.js';

const PATH_RE = new RegExp(SECRET_PATH_PATTERN);
const STAGE_RE = new RegExp(STAGE_PATTERN);
/** Read at most this much: room for a pretty-printed JSON value; the server judges the 64 KiB limit. */
const MAX_INPUT_BYTES = 4 * SECRET_VALUE_MAX_BYTES;

/** Why `text` is not a secret path, or undefined if it is one. */
export function secretPathProblem(text: string): string | undefined {
  const shown = JSON.stringify(text.slice(0, 60));
  if (text.length > SECRET_PATH_MAX) return `a secret path is at most ${SECRET_PATH_MAX} characters`;
  if (!PATH_RE.test(text)) return `${shown} is not a secret path: lowercase letters, digits, "-", "_" and "." in segments joined by "/", like payments/stripe/api-key`;
  const segments = text.split('/');
  if (segments.some((segment) => segment === '.' || segment === '..')) return `${shown} is not a secret path: "." and ".." are not segments`;
  const last = segments[segments.length - 1]!;
  if ((SECRET_ACTIONS as readonly string[]).includes(last)) return `${shown} is not a secret path: it may not end in "${last}", which names an operation`;
  return undefined;
}

export function secretPathArgument(ctx: CommandContext, index = 0): string {
  const path = ctx.positionals[index] ?? '';
  const problem = secretPathProblem(path);
  if (problem !== undefined) throw new UsageError(problem);
  return path;
}

export function isStageName(text: string): boolean {
  return STAGE_RE.test(text);
}

/** `--stage S` or `--version N` (one at most) as the query of a read. */
function selectorQuery(ctx: CommandContext): ReadSecretQueryWire {
  const stage = optionString(ctx, 'stage');
  const version = integerOption(ctx, 'version');
  if (stage !== undefined && version !== undefined) throw new UsageError('give either --stage or --version, not both');
  if (stage !== undefined && !isStageName(stage)) throw new UsageError(`--stage "${stage.slice(0, 40)}" is not a stage name (current, previous, pending, or lowercase letters, digits, "-", "_")`);
  return { ...(stage !== undefined ? { stage } : {}), ...(version !== undefined ? { version } : {}) };
}

function casBody(ctx: CommandContext): { cas?: number } {
  const cas = integerOption(ctx, 'cas', 0);
  return cas === undefined ? {} : { cas };
}

/**
 * The value to store: `--value-file`, else stdin (never a terminal: typing a secret there leaves
 * it on screen and in scrollback). One final newline is dropped; `--json-value` needs an object.
 */
export async function readSecretValue(ctx: CommandContext): Promise<string | Record<string, unknown>> {
  const file = optionString(ctx, 'value-file');
  let bytes: Buffer | undefined;
  if (file !== undefined) {
    try {
      bytes = await readFile(file);
    } catch (error) {
      throw new UsageError(`cannot read --value-file ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    if (bytes.length > MAX_INPUT_BYTES) bytes = undefined;
  } else {
    if (ctx.stdin.isTTY) {
      throw new UsageError('pipe the value on stdin (for example: printf %s "$VALUE" | keysmith secrets put PATH, or keysmith secrets put PATH < file) or give --value-file FILE; values are never taken from a flag');
    }
    bytes = await readAll(ctx.stdin, MAX_INPUT_BYTES);
  }
  if (bytes === undefined) throw new UsageError(`the value is larger than the ${SECRET_VALUE_MAX_BYTES / 1024} KiB limit`);
  const decoded = utf8Text(bytes);
  if (decoded === undefined) throw new UsageError('the value is not UTF-8 text; encode binary values (base64, say) before storing them');
  const text = stripOneNewline(decoded);
  if (!optionFlag(ctx, 'json-value')) {
    if (text === '') throw new UsageError(`the value is empty${file === undefined ? ' (nothing was piped on stdin)' : ''}`);
    return text;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // The parser's message may quote the input, so it is not repeated.
    throw new UsageError('--json-value: the value is not valid JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new UsageError('--json-value: the value must be a JSON object, like {"username":"…","password":"…"}');
  return parsed as Record<string, unknown>;
}

/** The stage → version map in a stable order: current, previous, pending, then custom stages. */
function stagesText(stages: Record<string, number>): string {
  const order = (stage: string) => ['current', 'previous', 'pending'].indexOf(stage) + 1 || 4;
  const names = Object.keys(stages).sort((a, b) => order(a) - order(b) || a.localeCompare(b));
  return names.length === 0 ? '-' : names.map((stage) => `${stage}=v${stages[stage]}`).join(' ');
}

export function metadataFields(meta: SecretMetadataWire): string {
  const entries: Array<readonly [string, unknown]> = [
    ['path', meta.path],
    ['id', meta.id],
    ['owner', meta.owner],
    ['description', meta.description],
    ['labels', meta.labels],
    ['currentVersion', meta.currentVersion],
    ['stages', stagesText(meta.stages)],
    ['maxVersions', meta.maxVersions],
    ['expiresAt', meta.expiresAt],
    ['createdAt', meta.createdAt],
    ['createdBy', meta.createdBy],
    ['updatedAt', meta.updatedAt],
  ];
  if (meta.deletedAt !== null) entries.push(['deletedAt', meta.deletedAt], ['deletionDate', meta.deletionDate]);
  return fields(entries);
}

function versionsText(result: SecretVersionsWire, heading: string[] = []): string {
  const rows = result.versions.map((v) => ({ ...v, version: `v${v.version}`, destroyedAt: v.destroyedAt ?? '' }));
  return [...heading, fields([['path', result.secret.path], ['stages', stagesText(result.secret.stages)]]), '', table(rows, ['version', 'stages', 'createdAt', 'createdBy', 'destroyedAt', 'kekVersion'])].join('\n');
}

const putSecret: Command = {
  name: 'secrets put',
  summary: 'Store a new version of a secret; the value is piped on stdin or read from --value-file',
  usage:
    '<path> [--value-file FILE | < stdin] [--json-value] [--stage current|pending] [--cas N] [--request-token T] [--owner O] [--description D] [--label k=v]… [--expires-at TIME] [--max-versions N]',
  options: {
    ...clientOptions,
    'value-file': { type: 'string' },
    'json-value': { type: 'boolean' },
    // Listed only to refuse it with a useful message: a value in argv is in shell history and `ps`.
    value: { type: 'string' },
    stage: { type: 'string' },
    cas: { type: 'string' },
    'request-token': { type: 'string' },
    owner: { type: 'string' },
    description: { type: 'string' },
    label: { type: 'string', multiple: true },
    'expires-at': { type: 'string' },
    'max-versions': { type: 'string' },
  },
  positionals: { min: 1, max: 1, names: '<path>' },
  async run(ctx) {
    if (ctx.options.value !== undefined) {
      throw new UsageError('--value is not accepted: a value on the command line lands in shell history and process lists; pipe it on stdin or give --value-file FILE');
    }
    const path = secretPathArgument(ctx);
    const stage = oneOf(ctx, 'stage', ['current', 'pending'] as const);
    const labels = parseLabels(optionList(ctx, 'label'));
    const maxVersions = integerOption(ctx, 'max-versions');
    const requestToken = optionString(ctx, 'request-token');
    const owner = optionString(ctx, 'owner');
    const description = optionString(ctx, 'description');
    const expiresAt = optionString(ctx, 'expires-at');
    const body: PutSecretBodyWire = {
      value: await readSecretValue(ctx),
      ...(stage !== undefined ? { stage } : {}),
      ...casBody(ctx),
      ...(requestToken !== undefined ? { requestToken } : {}),
      ...(owner !== undefined ? { owner } : {}),
      ...(description !== undefined ? { description } : {}),
      ...(labels !== undefined ? { labels } : {}),
      ...(expiresAt !== undefined ? { expiresAt } : {}),
      ...(maxVersions !== undefined ? { maxVersions } : {}),
    };
    const result = await clientFrom(ctx).putSecret(path, body);
    const what = result.replayed ? 'Already stored (same --request-token)' : result.created ? 'Created' : 'Stored';
    const stages = result.stages.length > 0 ? ` (${result.stages.join(', ')})` : '';
    const next = result.stages.includes('pending') ? [`Make it current with: keysmith secrets promote ${path}`] : [];
    return { data: result, text: [`${what} ${result.path} version ${result.version}${stages}.`, ...next].join('\n') };
  },
};

/** The printed form of a value: strings as they are, anything else as JSON. */
function valueText(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

const getSecret: Command = {
  name: 'secrets get',
  summary: 'Print a secret value (current unless --stage or --version); --json gives the version and stages too',
  usage: '<path> [--stage S | --version N] [--field F]',
  options: { ...clientOptions, stage: { type: 'string' }, version: { type: 'string' }, field: { type: 'string' } },
  positionals: { min: 1, max: 1, names: '<path>' },
  async run(ctx) {
    const path = secretPathArgument(ctx);
    const field = optionString(ctx, 'field');
    const secret = await clientFrom(ctx).readSecret(path, selectorQuery(ctx));
    if (field === undefined) return { data: secret, text: `${valueText(secret.value)}\n`, output: 'raw' };
    if (typeof secret.value === 'string') throw new RefusedError(`${path} v${secret.version} holds a string, not a JSON object: drop --field`, 'not_an_object');
    if (!Object.hasOwn(secret.value, field)) throw new RefusedError(`${path} v${secret.version} has no field "${field.slice(0, 60)}"`, 'field_not_found');
    const value = (secret.value as Record<string, unknown>)[field];
    return { data: { ...secret, field, value }, text: `${valueText(value)}\n`, output: 'raw' };
  },
};

const listSecrets: Command = {
  name: 'secrets list',
  summary: 'List secrets by path (never their values); --deleted lists those scheduled for deletion',
  usage: '[--prefix P] [--deleted] [--limit 50] [--cursor C | --all]',
  options: { ...clientOptions, prefix: { type: 'string' }, deleted: { type: 'boolean' }, limit: { type: 'string' }, cursor: { type: 'string' }, all: { type: 'boolean' } },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const all = optionFlag(ctx, 'all');
    const firstCursor = optionString(ctx, 'cursor');
    if (all && firstCursor !== undefined) throw new UsageError('give either --cursor or --all, not both');
    const prefix = optionString(ctx, 'prefix');
    const deleted = optionFlag(ctx, 'deleted');
    const limit = integerOption(ctx, 'limit');
    const query = { ...(prefix !== undefined ? { prefix } : {}), ...(deleted ? { deleted } : {}), ...(limit !== undefined ? { limit } : {}) };
    const client = clientFrom(ctx);
    const first = await client.listSecrets({ ...query, ...(firstCursor !== undefined ? { cursor: firstCursor } : {}) });
    const { data, nextCursor } = await collectPages(first, all, (cursor) => client.listSecrets({ ...query, cursor }));
    const rows = data.map((meta) => ({ ...meta, version: meta.currentVersion === null ? null : `v${meta.currentVersion}`, stages: stagesText(meta.stages) }));
    const lines = [table(rows, deleted ? ['path', 'owner', 'deletedAt', 'deletionDate'] : ['path', 'version', 'stages', 'owner', 'updatedAt'])];
    if (nextCursor !== null) lines.push('', `More secrets: add --cursor ${nextCursor} (or --all for every page)`);
    return { data: { data, nextCursor } satisfies SecretPageWire, text: lines.join('\n') };
  },
};

const secretVersions: Command = {
  name: 'secrets versions',
  summary: 'List the versions of a secret with their stages (never their values)',
  usage: '<path>',
  options: { ...clientOptions },
  positionals: { min: 1, max: 1, names: '<path>' },
  async run(ctx) {
    const result = await clientFrom(ctx).secretVersions(secretPathArgument(ctx));
    return { data: result, text: versionsText(result) };
  },
};

function stageMoveCommand(verb: 'promote' | 'rollback', summary: string): Command {
  return {
    name: `secrets ${verb}`,
    summary,
    usage: '<path> [--cas N]',
    options: { ...clientOptions, cas: { type: 'string' } },
    positionals: { min: 1, max: 1, names: '<path>' },
    async run(ctx) {
      const path = secretPathArgument(ctx);
      const client = clientFrom(ctx);
      const meta = verb === 'promote' ? await client.promoteSecret(path, casBody(ctx)) : await client.rollbackSecret(path, casBody(ctx));
      const done = verb === 'promote' ? 'Promoted' : 'Rolled back';
      return { data: meta, text: [`${done} ${meta.path}: current is v${meta.currentVersion}.`, '', metadataFields(meta)].join('\n') };
    },
  };
}

const moveStage: Command = {
  name: 'secrets stage',
  summary: 'Put a stage on a version, or take it off with "none"',
  usage: '<path> <stage> <version|none> [--cas N]',
  options: { ...clientOptions, cas: { type: 'string' } },
  positionals: { min: 3, max: 3, names: '<path> <stage> <version|none>' },
  async run(ctx) {
    const path = secretPathArgument(ctx);
    const stage = ctx.positionals[1]!;
    if (!isStageName(stage)) throw new UsageError(`"${stage.slice(0, 40)}" is not a stage name (lowercase letters, digits, "-", "_"; starting with a letter)`);
    const target = ctx.positionals[2]!;
    if (target !== 'none' && !/^[1-9][0-9]{0,8}$/.test(target)) throw new UsageError(`"${target.slice(0, 20)}" is neither a version number nor "none"`);
    const version = target === 'none' ? null : Number(target);
    const meta = await clientFrom(ctx).moveSecretStage(path, { stage, version, ...casBody(ctx) });
    const done = version === null ? `Took ${stage} off ${meta.path}.` : `Moved ${stage} of ${meta.path} to v${version}.`;
    return { data: meta, text: [done, '', metadataFields(meta)].join('\n') };
  },
};

const deleteSecret: Command = {
  name: 'secrets delete',
  summary: 'Schedule a secret for deletion; it can be restored until the recovery window ends',
  usage: '<path> [--recovery-window 7d]',
  options: { ...clientOptions, 'recovery-window': { type: 'string' } },
  positionals: { min: 1, max: 1, names: '<path>' },
  async run(ctx) {
    const path = secretPathArgument(ctx);
    const recoveryWindow = optionString(ctx, 'recovery-window');
    const meta = await clientFrom(ctx).deleteSecret(path, recoveryWindow !== undefined ? { recoveryWindow } : {});
    return {
      data: meta,
      text: [`Scheduled ${meta.path} for deletion on ${meta.deletionDate ?? 'the end of its recovery window'}.`, `Undo with: keysmith secrets restore ${meta.path}`].join('\n'),
    };
  },
};

const restoreSecret: Command = {
  name: 'secrets restore',
  summary: 'Cancel the scheduled deletion of a secret',
  usage: '<path>',
  options: { ...clientOptions },
  positionals: { min: 1, max: 1, names: '<path>' },
  async run(ctx) {
    const meta = await clientFrom(ctx).restoreSecret(secretPathArgument(ctx));
    return { data: meta, text: [`Restored ${meta.path}.`, '', metadataFields(meta)].join('\n') };
  },
};

const destroyVersions: Command = {
  name: 'secrets destroy',
  summary: 'Erase the values of some versions for good (their history stays)',
  usage: '<path> --version N [--version N]…',
  options: { ...clientOptions, version: { type: 'string', multiple: true } },
  positionals: { min: 1, max: 1, names: '<path>' },
  async run(ctx) {
    const path = secretPathArgument(ctx);
    const given = optionList(ctx, 'version') ?? [];
    if (given.length === 0) throw new UsageError('--version is required (repeat it for several): the versions whose values to erase');
    const versions = given.map((text) => {
      if (!/^[1-9][0-9]{0,8}$/.test(text)) throw new UsageError(`--version "${text.slice(0, 20)}" is not a version number`);
      return Number(text);
    });
    const result = await clientFrom(ctx).destroySecretVersions(path, { versions: [...new Set(versions)] });
    return { data: result, text: versionsText(result, [`Destroyed ${[...new Set(versions)].map((v) => `v${v}`).join(', ')} of ${result.secret.path}.`, '']) };
  },
};

const secretReaders: Command = {
  name: 'secrets readers',
  summary: 'Who read a version of a secret (current unless --stage or --version), and how often',
  usage: '<path> [--stage S | --version N] [--since 24h]',
  options: { ...clientOptions, stage: { type: 'string' }, version: { type: 'string' }, since: { type: 'string' } },
  positionals: { min: 1, max: 1, names: '<path>' },
  async run(ctx) {
    const path = secretPathArgument(ctx);
    const since = optionString(ctx, 'since');
    const result = await clientFrom(ctx).secretReaders(path, { ...selectorQuery(ctx), ...(since !== undefined ? { since } : {}) });
    const text = [
      fields([['path', result.path], ['version', `v${result.version}`], ['since', result.since], ['reads', result.total]]),
      '',
      table(result.readers, ['principal', 'reads', 'lastReadAt']),
    ].join('\n');
    return { data: result, text };
  },
};

export const secretsCommands: readonly Command[] = [
  putSecret,
  getSecret,
  listSecrets,
  secretVersions,
  stageMoveCommand('promote', 'Make the pending version current (the old current becomes previous)'),
  stageMoveCommand('rollback', 'Make the previous version current again'),
  moveStage,
  deleteSecret,
  restoreSecret,
  destroyVersions,
  secretReaders,
];
