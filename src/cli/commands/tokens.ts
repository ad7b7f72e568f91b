/**
 * `keysmith tokens create|list|show|rotate|revoke`: management tokens. A token can only be
 * given, rotated or revoked by a caller whose scopes cover it.
 */
import type { CreateTokenBodyWire, KeyPageWire } from '../../contract/index.js';
import { UsageError, optionFlag, optionList, optionString, type Command } from '../command.js';
import { clientFrom, clientOptions } from '../client.js';
import { table } from '../render.js';
import { collectPages } from '../pages.js';
import { integerOption, parseLabels } from '../options.js';
import { expiryOptions, issuedText, keyIdArgument, recordFields, shownOnceWarning } from './keys.js';

export const createTokenCommand: Command = {
  name: 'tokens create',
  summary: 'Issue a management token (shown once) with some of your scopes, e.g. keys:verify for a gateway',
  usage: '--scope S [--scope S]… [--owner NAME] [--purpose TEXT] [--label k=v]… [--ttl 30d | --expires-at TIME] [--ip CIDR]…',
  options: {
    ...clientOptions,
    scope: { type: 'string', multiple: true },
    owner: { type: 'string' },
    purpose: { type: 'string' },
    label: { type: 'string', multiple: true },
    ttl: { type: 'string' },
    'expires-at': { type: 'string' },
    ip: { type: 'string', multiple: true },
  },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const scopes = optionList(ctx, 'scope');
    if (scopes === undefined || scopes.length === 0) {
      throw new UsageError('--scope is required (repeat it for several), for example --scope keys:verify');
    }
    const owner = optionString(ctx, 'owner');
    const purpose = optionString(ctx, 'purpose');
    const labels = parseLabels(optionList(ctx, 'label'));
    const ipAllowlist = optionList(ctx, 'ip');
    const body: CreateTokenBodyWire = {
      scopes,
      ...(owner !== undefined ? { owner } : {}),
      ...(purpose !== undefined ? { purpose } : {}),
      ...(labels !== undefined ? { labels } : {}),
      ...expiryOptions(ctx),
      ...(ipAllowlist !== undefined ? { ipAllowlist } : {}),
    };
    const issued = await clientFrom(ctx).createToken(body);
    return {
      data: issued,
      text: [`Token: ${issued.key}`, shownOnceWarning('token'), 'Use it as KEYSMITH_TOKEN, or as "Authorization: Bearer <token>".', '', recordFields(issued)].join('\n'),
    };
  },
};

const listTokens: Command = {
  name: 'tokens list',
  summary: 'List management tokens, newest first',
  usage: '[--limit 50] [--cursor C | --all]',
  options: { ...clientOptions, limit: { type: 'string' }, cursor: { type: 'string' }, all: { type: 'boolean' } },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const client = clientFrom(ctx);
    const limit = integerOption(ctx, 'limit');
    const cursor = optionString(ctx, 'cursor');
    if (optionFlag(ctx, 'all') && cursor !== undefined) throw new UsageError('give either --cursor or --all, not both');
    const query = limit !== undefined ? { limit } : {};
    const first = await client.listTokens({ ...query, ...(cursor !== undefined ? { cursor } : {}) });
    const { data: records, nextCursor } = await collectPages(first, optionFlag(ctx, 'all'), (next) => client.listTokens({ ...query, cursor: next }));
    const lines = [table(records, ['id', 'owner', 'status', 'scopes', 'expiresAt', 'lastUsedAt'])];
    if (nextCursor !== null) lines.push('', `More tokens: add --cursor ${nextCursor} (or --all)`);
    return { data: { data: records, nextCursor } satisfies KeyPageWire, text: lines.join('\n') };
  },
};

const showToken: Command = {
  name: 'tokens show',
  summary: 'Show one management token record (never the token itself)',
  usage: '<token-id>',
  options: { ...clientOptions },
  positionals: { min: 1, max: 1, names: '<token-id>' },
  async run(ctx) {
    const record = await clientFrom(ctx).getToken(keyIdArgument(ctx));
    return { data: record, text: recordFields(record) };
  },
};

const rotateToken: Command = {
  name: 'tokens rotate',
  summary: 'Issue a successor token (shown once); the old one keeps working for the overlap',
  usage: '<token-id> [--overlap 24h] [--ttl 30d | --expires-at TIME]',
  options: { ...clientOptions, overlap: { type: 'string' }, ttl: { type: 'string' }, 'expires-at': { type: 'string' } },
  positionals: { min: 1, max: 1, names: '<token-id>' },
  async run(ctx) {
    const overlap = optionString(ctx, 'overlap');
    const rotated = await clientFrom(ctx).rotateToken(keyIdArgument(ctx), { ...(overlap !== undefined ? { overlap } : {}), ...expiryOptions(ctx) });
    const heading = [`Rotated ${rotated.previous.id} to ${rotated.id}; the old token works until ${rotated.previous.graceEndsAt ?? 'now'}.`, ''];
    return { data: rotated, text: issuedText(rotated, 'token', heading) };
  },
};

const revokeToken: Command = {
  name: 'tokens revoke',
  summary: 'Revoke a management token now',
  usage: '<token-id> [--reason TEXT]',
  options: { ...clientOptions, reason: { type: 'string' } },
  positionals: { min: 1, max: 1, names: '<token-id>' },
  async run(ctx) {
    const record = await clientFrom(ctx).revokeToken(keyIdArgument(ctx), optionString(ctx, 'reason'));
    return { data: record, text: [`Revoked ${record.id}.`, '', recordFields(record)].join('\n') };
  },
};

export const tokenCommands: readonly Command[] = [createTokenCommand, listTokens, showToken, rotateToken, revokeToken];
