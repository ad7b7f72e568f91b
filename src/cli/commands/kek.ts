/**
 * `keysmith kek status|rotate|retire`: the key-encryption keys that wrap every data key. After a
 * rotation the server re-wraps data keys in the background; on a terminal the CLI follows that
 * with a progress bar (Ctrl-C stops watching, not the re-wrap).
 */
import type { KekStatusWire } from '../../contract/index.js';
import { UsageError, optionFlag, type Command, type CommandContext } from '../command.js';
import { clientFrom, clientOptions } from '../client.js';
import { fields, table } from '../render.js';
import { watchProgress } from '../progress.js';

export function kekStatusText(status: KekStatusWire): string {
  const { rewrap } = status;
  const rewrapText =
    rewrap.remaining === 0
      ? `done: every data key is under v${status.currentVersion}`
      : `${rewrap.total - rewrap.remaining}/${rewrap.total} data keys re-wrapped to v${rewrap.toVersion}${rewrap.running ? ' (running)' : ' (not running)'}`;
  return [
    fields([
      ['provider', status.provider],
      ['currentVersion', `v${status.currentVersion}`],
      ['rewrap', rewrapText],
    ]),
    '',
    table(
      status.versions.map((v) => ({ ...v, version: `v${v.version}` })),
      ['version', 'state', 'dataKeys', 'createdAt', 'retiredAt'],
    ),
  ].join('\n');
}

/**
 * Polls GET /v1/kek every 500 ms until no data key is left under an older version or the user
 * stops watching, drawing a bar on a terminal (never under --json).
 */
async function watchRewrap(ctx: CommandContext, first: KekStatusWire): Promise<{ status: KekStatusWire; stopped: boolean }> {
  const client = clientFrom(ctx);
  let reads = 0;
  const { value, stopped } = await watchProgress({
    stream: ctx.stderr,
    label: `Re-wrapping data keys to v${first.rewrap.toVersion || first.currentVersion}`,
    draw: !ctx.json,
    // The status in hand counts as the first read.
    read: async () => (reads++ === 0 ? first : client.kekStatus()),
    finished: (status) => status.rewrap.remaining === 0,
    measure: (status) => ({ done: status.rewrap.total - status.rewrap.remaining, total: status.rewrap.total }),
    intervalMs: 500,
    stopSignal: ctx.stopSignal,
  });
  return { status: value, stopped };
}

const STOPPED_NOTE = 'Stopped watching; the re-wrap goes on in the server (follow it with: keysmith kek status --watch).';

const kekStatus: Command = {
  name: 'kek status',
  summary: 'Show key-encryption key versions, their data keys and re-wrap progress (--watch follows it)',
  usage: '[--watch]',
  options: { ...clientOptions, watch: { type: 'boolean' } },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const status = await clientFrom(ctx).kekStatus();
    if (!optionFlag(ctx, 'watch')) return { data: status, text: kekStatusText(status) };
    // --watch waits for the re-wrap under --json too (silently), so scripts can wait on it.
    const watched = await watchRewrap(ctx, status);
    return { data: watched.status, text: [kekStatusText(watched.status), ...(watched.stopped ? ['', STOPPED_NOTE] : [])].join('\n') };
  },
};

const rotateKek: Command = {
  name: 'kek rotate',
  summary: 'Make a new key-encryption key current; data keys are re-wrapped in the background (a bar follows it on a terminal)',
  usage: '[--no-wait]',
  options: { ...clientOptions, 'no-wait': { type: 'boolean' } },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const rotated = await clientFrom(ctx).rotateKek();
    const heading = `Rotated the key-encryption key to v${rotated.currentVersion}.`;
    // Off a terminal and under --json the answer comes at once; `kek status --watch` waits.
    if (optionFlag(ctx, 'no-wait') || ctx.json || !ctx.stderr.isTTY) return { data: rotated, text: [heading, '', kekStatusText(rotated)].join('\n') };
    const watched = await watchRewrap(ctx, rotated);
    return { data: watched.status, text: [heading, '', kekStatusText(watched.status), ...(watched.stopped ? ['', STOPPED_NOTE] : [])].join('\n') };
  },
};

const retireKek: Command = {
  name: 'kek retire',
  summary: 'Retire an old key-encryption key version once no data key uses it',
  usage: '<version>',
  options: { ...clientOptions },
  positionals: { min: 1, max: 1, names: '<version>' },
  async run(ctx) {
    const text = ctx.positionals[0]!.replace(/^v/, '');
    if (!/^[1-9][0-9]{0,8}$/.test(text)) throw new UsageError(`"${ctx.positionals[0]!.slice(0, 20)}" is not a KEK version number`);
    const status = await clientFrom(ctx).retireKek(Number(text));
    return { data: status, text: [`Retired KEK v${text}.`, '', kekStatusText(status)].join('\n') };
  },
};

export const kekCommands: readonly Command[] = [kekStatus, rotateKek, retireKek];
