/**
 * `keysmith events`: follows `GET /v1/events` and prints one line per event (JSON lines with
 * `--json`) until Ctrl-C, or until `--count N` events have arrived. A dropped connection is
 * resumed from the last event seen, so no event is missed or printed twice.
 */
import type { StreamEventWire } from '../../contract/index.js';
import { UsageError, optionString, type Command } from '../command.js';
import { clientFrom, clientOptions } from '../client.js';
import { integerOption } from '../options.js';

/** `#12 2026-11-01T10:00:00.000Z key.rotated key_… by key_… successor=key_… overlap=1h`. */
export function eventLine(event: StreamEventWire): string {
  const facts = Object.entries(event.data).map(([name, value]) => `${name}=${typeof value === 'string' ? value : JSON.stringify(value)}`);
  return [`#${event.seq}`, event.time, event.action, event.target ?? '-', `by ${event.actor}`, ...facts].join(' ');
}

export const eventsCommand: Command = {
  name: 'events',
  summary: 'Follow key, secret, rotation, incident and KEK events as they happen (Ctrl-C stops)',
  usage: '[--types key,secret,rotation,incident,kek] [--target ID|PATH] [--since SEQ] [--count N]',
  options: {
    ...clientOptions,
    types: { type: 'string' },
    target: { type: 'string' },
    since: { type: 'string' },
    count: { type: 'string' },
  },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const types = optionString(ctx, 'types');
    const target = optionString(ctx, 'target');
    if (types === '' || target === '') throw new UsageError('--types and --target need a value');
    const since = integerOption(ctx, 'since', 0);
    const count = integerOption(ctx, 'count');
    const client = clientFrom(ctx);
    const abort = new AbortController();
    void ctx.stopSignal.then(() => abort.abort());
    let seen = 0;
    let last: number | null = null;
    for await (const event of client.events({
      ...(types !== undefined ? { types: types.split(',').map((type) => type.trim()) } : {}),
      ...(target !== undefined ? { target } : {}),
      ...(since !== undefined ? { since } : {}),
      signal: abort.signal,
    })) {
      ctx.stdout.write(`${ctx.json ? JSON.stringify(event) : eventLine(event)}\n`);
      seen += 1;
      last = event.seq;
      if (count !== undefined && seen >= count) break;
    }
    // The lines were the output; the summary is for callers of the function.
    return { data: { events: seen, lastSeq: last }, output: 'none' };
  },
};
