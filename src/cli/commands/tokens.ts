/** `keysmith tokens create`: a management token with some of the caller's scopes, shown once. */
import type { CreateTokenBodyWire } from '../../contract/index.js';
import { UsageError, optionList, optionString, type Command } from '../command.js';
import { clientFrom, clientOptions } from '../client.js';
import { expiryOptions, parseLabels, recordFields, shownOnceWarning } from './keys.js';

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
