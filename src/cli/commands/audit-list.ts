/** `keysmith audit list`: page through the audit log in sequence order. */
import type { AuditPageWire } from '../../contract/index.js';
import { UsageError, optionFlag, optionString, type Command } from '../command.js';
import { clientFrom, clientOptions } from '../client.js';
import { table } from '../render.js';
import { collectPages } from '../pages.js';
import { integerOption } from '../options.js';

export const auditListCommand: Command = {
  name: 'audit list',
  summary: 'List audit events in sequence order, with filters',
  usage: '[--after SEQ] [--limit 100] [--target ID] [--action key.revoked] [--actor ID] [--all]',
  options: {
    ...clientOptions,
    after: { type: 'string' },
    limit: { type: 'string' },
    target: { type: 'string' },
    action: { type: 'string' },
    actor: { type: 'string' },
    all: { type: 'boolean' },
  },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const after = integerOption(ctx, 'after', 0);
    const limit = integerOption(ctx, 'limit');
    const target = optionString(ctx, 'target');
    const action = optionString(ctx, 'action');
    const actor = optionString(ctx, 'actor');
    const all = optionFlag(ctx, 'all');
    if (target === '' || action === '' || actor === '') throw new UsageError('--target, --action and --actor need a value');
    const client = clientFrom(ctx);
    const query = {
      ...(limit !== undefined ? { limit } : {}),
      ...(target !== undefined ? { target } : {}),
      ...(action !== undefined ? { action } : {}),
      ...(actor !== undefined ? { actor } : {}),
    };
    const first = await client.listAudit({ ...query, ...(after !== undefined ? { after } : {}) });
    const { data: events, nextCursor } = await collectPages(first, all, (cursor) => client.listAudit({ ...query, after: cursor }));
    const lines = [table(events, ['seq', 'time', 'actor', 'action', 'target'])];
    if (nextCursor !== null) lines.push('', `More events: add --after ${nextCursor} (or --all for every page)`);
    return { data: { data: events, nextCursor } satisfies AuditPageWire, text: lines.join('\n') };
  },
};
