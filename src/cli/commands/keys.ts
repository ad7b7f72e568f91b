/**
 * `keysmith keys …`: issue, list, inspect, verify, rotate, revoke and retire service keys through
 * the API. Flags are checked here only where it is cheap and certain (ids, `k=v` labels,
 * `N/window` rate limits); everything else is the server's to judge, so the CLI never disagrees
 * with it.
 */
import type { IssuedKeyWire, KeyPageWire, KeyRecordWire, KeyUsageWire, UpdateKeyBodyWire, VerifyResultWire } from '../../contract/index.js';
import { UsageError, optionFlag, optionList, optionString, type Command, type CommandContext } from '../command.js';
import { clientFrom, clientOptions } from '../client.js';
import { fields, table } from '../render.js';
import { collectPages } from '../pages.js';
import { integerOption, oneOf, parseLabels } from '../options.js';
import { readAll } from '../input.js';

const KEY_ID_RE = /^key_[0-9A-Za-z]{22}$/;
const KEY_ENVS = ['live', 'test'] as const;
const KEY_STATUSES = ['active', 'expired', 'revoked', 'disabled', 'superseded'] as const;

/** The line shown under every issued key or token. */
export function shownOnceWarning(noun: 'key' | 'token'): string {
  return `This ${noun} is shown once and cannot be shown again: store it now (a secret manager, not a chat or a ticket).`;
}

/** The positional key id, checked locally so a typo never costs a round trip. */
export function keyIdArgument(ctx: CommandContext): string {
  const id = ctx.positionals[0] ?? '';
  if (KEY_ID_RE.test(id)) return id;
  // Never echo something that may be a key itself.
  if (/_(live|test)_/.test(id)) throw new UsageError('that looks like a key, not a key id; key ids look like key_ followed by 22 letters and digits');
  throw new UsageError(`"${id.slice(0, 40)}" is not a key id; key ids look like key_ followed by 22 letters and digits`);
}

/** `--rate-limit 100/1m` into `{ limit, window }`; the server judges the window. */
export function parseRateLimit(text: string | undefined): { limit: number; window: string } | undefined {
  if (text === undefined) return undefined;
  const match = /^([1-9][0-9]{0,9})\/([^/\s]+)$/.exec(text);
  if (!match) throw new UsageError(`--rate-limit "${text.slice(0, 40)}" is not <requests>/<window> (for example 100/1m)`);
  return { limit: Number(match[1]), window: match[2]! };
}

/** `--ttl` and `--expires-at` both set an expiry; only one may be given. */
export function expiryOptions(ctx: CommandContext): { ttl?: string; expiresAt?: string } {
  const ttl = optionString(ctx, 'ttl');
  const expiresAt = optionString(ctx, 'expires-at');
  if (ttl !== undefined && expiresAt !== undefined) throw new UsageError('give either --ttl or --expires-at, not both');
  return { ...(ttl !== undefined ? { ttl } : {}), ...(expiresAt !== undefined ? { expiresAt } : {}) };
}

/** The record as a key/value block; lifecycle fields appear once they are set. */
export function recordFields(record: KeyRecordWire): string {
  const entries: Array<readonly [string, unknown]> = [
    ['id', record.id],
    ['kind', record.kind],
    ['owner', record.owner],
    ['purpose', record.purpose],
    ['env', record.env],
    ['status', record.status],
    ['scopes', record.scopes],
    ['labels', record.labels],
    ['ipAllowlist', record.ipAllowlist ?? 'any address'],
    ['rateLimit', record.rateLimit ? `${record.rateLimit.limit}/${record.rateLimit.window}` : null],
    ['expiresAt', record.expiresAt],
    ['createdAt', record.createdAt],
    ['createdBy', record.createdBy],
    ['updatedAt', record.updatedAt],
    ['lastUsedAt', record.lastUsedAt],
  ];
  const lifecycle: Array<[string, string | null]> = [
    ['disabledAt', record.disabledAt],
    ['revokedAt', record.revokedAt],
    ['revokeReason', record.revokeReason],
    ['replaces', record.replaces],
    ['replacedBy', record.replacedBy],
    ['graceEndsAt', record.graceEndsAt],
    ['retiredAt', record.retiredAt],
  ];
  for (const entry of lifecycle) if (entry[1] !== null) entries.push(entry);
  return fields(entries);
}

export function issuedText(issued: IssuedKeyWire, noun: 'key' | 'token', heading: string[] = []): string {
  return [
    ...heading,
    `${noun === 'key' ? 'Key' : 'Token'}: ${issued.key}`,
    shownOnceWarning(noun),
    '',
    recordFields(issued),
  ].join('\n');
}

const createKey: Command = {
  name: 'keys create',
  summary: 'Issue a service key (shown once)',
  usage:
    '--owner NAME [--purpose TEXT] [--env live|test] [--scope S]… [--label k=v]… [--ttl 30d | --expires-at TIME] [--ip CIDR]… [--rate-limit 100/1m] [--prefix ks]',
  options: {
    ...clientOptions,
    owner: { type: 'string' },
    purpose: { type: 'string' },
    env: { type: 'string' },
    scope: { type: 'string', multiple: true },
    label: { type: 'string', multiple: true },
    ttl: { type: 'string' },
    'expires-at': { type: 'string' },
    ip: { type: 'string', multiple: true },
    'rate-limit': { type: 'string' },
    prefix: { type: 'string' },
  },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const owner = optionString(ctx, 'owner');
    if (owner === undefined || owner.trim() === '') throw new UsageError('--owner is required: the team or service answerable for this key');
    const purpose = optionString(ctx, 'purpose');
    const env = oneOf(ctx, 'env', KEY_ENVS);
    const scopes = optionList(ctx, 'scope');
    const labels = parseLabels(optionList(ctx, 'label'));
    const ipAllowlist = optionList(ctx, 'ip');
    const rateLimit = parseRateLimit(optionString(ctx, 'rate-limit'));
    const prefix = optionString(ctx, 'prefix');
    const issued = await clientFrom(ctx).createKey({
      owner,
      ...(purpose !== undefined ? { purpose } : {}),
      ...(env !== undefined ? { env } : {}),
      ...(prefix !== undefined ? { prefix } : {}),
      ...(scopes !== undefined ? { scopes } : {}),
      ...(labels !== undefined ? { labels } : {}),
      ...expiryOptions(ctx),
      ...(ipAllowlist !== undefined ? { ipAllowlist } : {}),
      ...(rateLimit !== undefined ? { rateLimit } : {}),
    });
    return { data: issued, text: issuedText(issued, 'key') };
  },
};

const listKeys: Command = {
  name: 'keys list',
  summary: 'List service keys, newest first',
  usage:
    '[--owner NAME] [--env live|test] [--label k=v]… [--status active|expired|revoked|disabled|superseded] [--expiring-within 7d] [--unused-for 30d] [--limit 50] [--cursor C | --all]',
  options: {
    ...clientOptions,
    owner: { type: 'string' },
    env: { type: 'string' },
    label: { type: 'string', multiple: true },
    status: { type: 'string' },
    'expiring-within': { type: 'string' },
    'unused-for': { type: 'string' },
    limit: { type: 'string' },
    cursor: { type: 'string' },
    all: { type: 'boolean' },
  },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const labels = optionList(ctx, 'label');
    // Checked for shape only; the server answers with the filter it understood.
    parseLabels(labels);
    const all = optionFlag(ctx, 'all');
    const firstCursor = optionString(ctx, 'cursor');
    if (all && firstCursor !== undefined) throw new UsageError('give either --cursor or --all, not both');
    const owner = optionString(ctx, 'owner');
    const env = oneOf(ctx, 'env', KEY_ENVS);
    const status = oneOf(ctx, 'status', KEY_STATUSES);
    const expiringWithin = optionString(ctx, 'expiring-within');
    const unusedFor = optionString(ctx, 'unused-for');
    const limit = integerOption(ctx, 'limit');
    const client = clientFrom(ctx);
    const query = {
      ...(owner !== undefined ? { owner } : {}),
      ...(env !== undefined ? { env } : {}),
      ...(labels !== undefined ? { label: labels } : {}),
      ...(status !== undefined ? { status } : {}),
      ...(expiringWithin !== undefined ? { expiringWithin } : {}),
      ...(unusedFor !== undefined ? { unusedFor } : {}),
      ...(limit !== undefined ? { limit } : {}),
    };
    const first = await client.listKeys({ ...query, ...(firstCursor !== undefined ? { cursor: firstCursor } : {}) });
    const { data: records, nextCursor } = await collectPages(first, all, (cursor) => client.listKeys({ ...query, cursor }));
    const lines = [table(records, ['id', 'owner', 'env', 'status', 'scopes', 'expiresAt', 'lastUsedAt'])];
    if (nextCursor !== null) lines.push('', `More keys: add --cursor ${nextCursor} (or --all for every page)`);
    return { data: { data: records, nextCursor } satisfies KeyPageWire, text: lines.join('\n') };
  },
};

const showKey: Command = {
  name: 'keys show',
  summary: 'Show one key record (never the key itself)',
  usage: '<key-id>',
  options: { ...clientOptions },
  positionals: { min: 1, max: 1, names: '<key-id>' },
  async run(ctx) {
    const record = await clientFrom(ctx).getKey(keyIdArgument(ctx));
    return { data: record, text: recordFields(record) };
  },
};

const VERIFY_EXPLANATIONS: Record<string, string> = {
  MALFORMED: 'not a Keysmith key (wrong shape or checksum)',
  NOT_FOUND: 'no such key on this server',
  EXPIRED: 'the key has expired',
  REVOKED: 'the key has been revoked',
  DISABLED: 'the key is disabled',
  INSUFFICIENT_SCOPE: 'the key lacks a required scope',
  IP_NOT_ALLOWED: 'the key may not be used from this address',
  RATE_LIMITED: 'the key is over its rate limit',
};

/** Reads a key piped on stdin, keeping it out of shell history and `ps`. */
async function readKeyFromStdin(ctx: CommandContext): Promise<string> {
  if (ctx.stdin.isTTY) ctx.stderr.write('Paste the key, then press Ctrl-D:\n');
  const bytes = await readAll(ctx.stdin, 4096);
  if (bytes === undefined) throw new UsageError('stdin holds more than one key; pipe just the key');
  return bytes.toString('utf8').trim();
}

function verifyText(result: VerifyResultWire): string {
  if (!result.valid) {
    const why = VERIFY_EXPLANATIONS[result.code];
    return [`INVALID: ${result.code}${why ? ` (${why})` : ''}`, ...(result.keyId ? [fields([['keyId', result.keyId]])] : [])].join('\n');
  }
  const lines = [
    `VALID`,
    fields([
      ['keyId', result.keyId],
      ['owner', result.owner],
      ['env', result.env],
      ['scopes', result.scopes],
      ['expiresAt', result.expiresAt],
      ...(result.ratelimit ? ([['rateLimit', `${result.ratelimit.remaining}/${result.ratelimit.limit} left until ${result.ratelimit.reset}`]] as const) : []),
    ]),
  ];
  if (result.rotation) {
    lines.push(
      '',
      `Rotation: this key was replaced by ${result.rotation.replacedBy} and stops working at ${result.rotation.graceEndsAt}; switch to the new key before then.`,
    );
  }
  return lines.join('\n');
}

const verifyKey: Command = {
  name: 'keys verify',
  summary: 'Verify a key as a gateway would; exit 0 if valid, 1 if not ("-" reads the key from stdin)',
  usage: '<key | -> [--scope S]… [--ip ADDRESS]',
  options: { ...clientOptions, scope: { type: 'string', multiple: true }, ip: { type: 'string' } },
  positionals: { min: 1, max: 1, names: '<key> (or - to read it from stdin)' },
  async run(ctx) {
    const argument = ctx.positionals[0]!;
    const key = argument === '-' ? await readKeyFromStdin(ctx) : argument;
    if (key === '') throw new UsageError('no key given');
    const scopes = optionList(ctx, 'scope');
    const ip = optionString(ctx, 'ip');
    const result = await clientFrom(ctx).verifyKey({ key, ...(scopes !== undefined ? { scopes } : {}), ...(ip !== undefined ? { ip } : {}) });
    return { data: result, text: verifyText(result), exitCode: result.valid ? 0 : 1 };
  },
};

const rotateKey: Command = {
  name: 'keys rotate',
  summary: 'Issue a successor key (shown once); the old key keeps working for the overlap',
  usage: '<key-id> [--overlap 24h] [--ttl 30d | --expires-at TIME]',
  options: { ...clientOptions, overlap: { type: 'string' }, ttl: { type: 'string' }, 'expires-at': { type: 'string' } },
  positionals: { min: 1, max: 1, names: '<key-id>' },
  async run(ctx) {
    const id = keyIdArgument(ctx);
    const overlap = optionString(ctx, 'overlap');
    const rotated = await clientFrom(ctx).rotateKey(id, { ...(overlap !== undefined ? { overlap } : {}), ...expiryOptions(ctx) });
    const { previous } = rotated;
    const heading = [
      `Rotated ${previous.id} to ${rotated.id}.`,
      previous.graceEndsAt ? `The old key keeps working until ${previous.graceEndsAt}; move callers to the new key before then.` : 'The old key stops working now.',
      '',
    ];
    return { data: rotated, text: issuedText(rotated, 'key', heading) };
  },
};

const revokeKey: Command = {
  name: 'keys revoke',
  summary: 'Revoke a key now; verification answers REVOKED from the next request',
  usage: '<key-id> [--reason TEXT]',
  options: { ...clientOptions, reason: { type: 'string' } },
  positionals: { min: 1, max: 1, names: '<key-id>' },
  async run(ctx) {
    const record = await clientFrom(ctx).revokeKey(keyIdArgument(ctx), optionString(ctx, 'reason'));
    return { data: record, text: [`Revoked ${record.id}.`, '', recordFields(record)].join('\n') };
  },
};

function stateCommand(verb: 'disable' | 'enable' | 'retire', summary: string, done: string): Command {
  return {
    name: `keys ${verb}`,
    summary,
    usage: '<key-id>',
    options: { ...clientOptions },
    positionals: { min: 1, max: 1, names: '<key-id>' },
    async run(ctx) {
      const id = keyIdArgument(ctx);
      const client = clientFrom(ctx);
      const record = verb === 'disable' ? await client.disableKey(id) : verb === 'enable' ? await client.enableKey(id) : await client.retireKey(id);
      return { data: record, text: [`${done} ${record.id}.`, '', recordFields(record)].join('\n') };
    },
  };
}

const updateKey: Command = {
  name: 'keys update',
  summary: 'Change purpose, labels, scopes (narrow only), IP allowlist, rate limit or expiry',
  usage:
    '<key-id> [--purpose TEXT] [--label k=v]… [--clear-labels] [--scope S]… [--ip CIDR]… [--clear-ip] [--rate-limit 100/1m] [--clear-rate-limit] [--ttl 30d | --expires-at TIME]',
  options: {
    ...clientOptions,
    purpose: { type: 'string' },
    label: { type: 'string', multiple: true },
    'clear-labels': { type: 'boolean' },
    scope: { type: 'string', multiple: true },
    ip: { type: 'string', multiple: true },
    'clear-ip': { type: 'boolean' },
    'rate-limit': { type: 'string' },
    'clear-rate-limit': { type: 'boolean' },
    ttl: { type: 'string' },
    'expires-at': { type: 'string' },
  },
  positionals: { min: 1, max: 1, names: '<key-id>' },
  async run(ctx) {
    const id = keyIdArgument(ctx);
    const body: UpdateKeyBodyWire = {};
    const purpose = optionString(ctx, 'purpose');
    if (purpose !== undefined) body.purpose = purpose;

    const labels = parseLabels(optionList(ctx, 'label'));
    if (labels !== undefined && optionFlag(ctx, 'clear-labels')) throw new UsageError('give either --label or --clear-labels, not both');
    if (labels !== undefined) body.labels = labels;
    else if (optionFlag(ctx, 'clear-labels')) body.labels = {};

    const scopes = optionList(ctx, 'scope');
    if (scopes !== undefined) body.scopes = scopes;

    const ips = optionList(ctx, 'ip');
    if (ips !== undefined && optionFlag(ctx, 'clear-ip')) throw new UsageError('give either --ip or --clear-ip, not both');
    if (ips !== undefined) body.ipAllowlist = ips;
    else if (optionFlag(ctx, 'clear-ip')) body.ipAllowlist = null;

    const rateLimit = parseRateLimit(optionString(ctx, 'rate-limit'));
    if (rateLimit !== undefined && optionFlag(ctx, 'clear-rate-limit')) throw new UsageError('give either --rate-limit or --clear-rate-limit, not both');
    if (rateLimit !== undefined) body.rateLimit = rateLimit;
    else if (optionFlag(ctx, 'clear-rate-limit')) body.rateLimit = null;

    Object.assign(body, expiryOptions(ctx));
    if (Object.keys(body).length === 0) {
      throw new UsageError('nothing to change: give at least one of --purpose, --label, --clear-labels, --scope, --ip, --clear-ip, --rate-limit, --clear-rate-limit, --ttl, --expires-at');
    }
    const record = await clientFrom(ctx).updateKey(id, body);
    return { data: record, text: [`Updated ${record.id}.`, '', recordFields(record)].join('\n') };
  },
};

function usageText(usage: KeyUsageWire): string {
  const lastUse = usage.lastUsedAt
    ? `${usage.lastUsedAt} from ${usage.lastUsedIp ?? 'unknown address'}${usage.lastUsedUserAgent ? ` (${usage.lastUsedUserAgent})` : ''}`
    : 'never';
  const outcomes = Object.keys(usage.totals).sort();
  const total = outcomes.reduce((sum, outcome) => sum + (usage.totals[outcome] ?? 0), 0);
  const lines = [
    fields([
      ['key', usage.keyId],
      ['since', usage.since],
      ['last used', lastUse],
      ['verifications', total],
      ['by outcome', total === 0 ? null : outcomes.map((outcome) => `${outcome}=${usage.totals[outcome]}`).join(' ')],
    ]),
  ];
  if (usage.minutes.length > 0) {
    const rows = usage.minutes.map((minute) => ({
      minute: minute.minute,
      total: minute.total,
      ...Object.fromEntries(outcomes.map((outcome) => [outcome, minute.counts[outcome] ?? 0])),
    }));
    lines.push('', table(rows, ['minute', 'total', ...outcomes]));
  }
  return lines.join('\n');
}

const keyUsage: Command = {
  name: 'keys usage',
  summary: 'Verifications of a key per minute by outcome, and its last use',
  usage: '<key-id> [--since 24h]',
  options: { ...clientOptions, since: { type: 'string' } },
  positionals: { min: 1, max: 1, names: '<key-id>' },
  async run(ctx) {
    const usage = await clientFrom(ctx).keyUsage(keyIdArgument(ctx), optionString(ctx, 'since'));
    return { data: usage, text: usageText(usage) };
  },
};

export const keysCommands: readonly Command[] = [
  createKey,
  listKeys,
  showKey,
  verifyKey,
  rotateKey,
  revokeKey,
  stateCommand('disable', 'Disable a key; verification answers DISABLED until it is enabled', 'Disabled'),
  stateCommand('enable', 'Enable a disabled key', 'Enabled'),
  updateKey,
  stateCommand('retire', "Destroy a revoked or expired key's hash, keeping its record for audit", 'Retired'),
  keyUsage,
];
