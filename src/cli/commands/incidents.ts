/**
 * `keysmith incident revoke|rotate|list|show`: break-glass mass revocation and rotation.
 *
 * Plan, then apply: the command always asks the server for the plan first (a dry run), shows it,
 * and only then, confirmed, applies it. On a terminal it asks; `--yes` skips the question; with
 * `--json` or off a terminal `--yes` is required (exit 2 without it), so no script revokes keys
 * by accident. The server does the work in one request, so a terminal shows a spinner with the
 * elapsed time while it runs (the server's progress is not streamed), then a full bar.
 * Rotated keys are shown once: written to `--out FILE` (JSON lines, mode 0600, never overwritten)
 * or printed with a warning that they cannot be shown again.
 */
import { writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { IncidentPlanWire, IncidentRecordWire, IncidentResultWire } from '../../contract/index.js';
import { RefusedError, UsageError, optionFlag, optionString, type Command, type CommandContext, type CommandResult } from '../command.js';
import { clientFrom, clientOptions } from '../client.js';
import { fields, table } from '../render.js';
import { integerOption } from '../options.js';
import { progressBar } from '../progress.js';

const INCIDENT_ID_RE = /^inc_[0-9A-Za-z]{22}$/;
/** Planned keys listed in text; the rest are counted. */
const PLAN_LINES = 20;

type Action = 'revoke' | 'rotate';

const actOptions = {
  ...clientOptions,
  select: { type: 'string' },
  reason: { type: 'string' },
  'dry-run': { type: 'boolean' },
  yes: { type: 'boolean', short: 'y' },
} as const;

function planText(plan: IncidentPlanWire, heading: string): string {
  if (plan.total === 0) return `${heading}: no active service key matches ${plan.select}.`;
  const shown = plan.keys.slice(0, PLAN_LINES);
  const lines = [`${heading}: ${plan.action} ${plan.total} key${plan.total === 1 ? '' : 's'} matching ${plan.select}`, '', table(shown, ['id', 'owner', 'env', 'createdAt'])];
  if (plan.total > shown.length) lines.push(`… and ${plan.total - shown.length} more`);
  return lines.join('\n');
}

/** Reads one line from stdin: true only for "yes". */
async function confirmed(ctx: CommandContext, question: string): Promise<boolean> {
  ctx.stderr.write(question);
  const lines = createInterface({ input: ctx.stdin, terminal: false });
  try {
    for await (const line of lines) return line.trim().toLowerCase() === 'yes';
    return false;
  } finally {
    lines.close();
  }
}

/** A spinner with the elapsed time on a terminal (never under --json); nothing otherwise. */
function spinner(ctx: CommandContext, label: string): { stop(): void } {
  if (ctx.json || !ctx.stderr.isTTY) return { stop: () => undefined };
  const started = Date.now();
  const frames = ['|', '/', '-', '\\'];
  let frame = 0;
  const draw = () => ctx.stderr.write(`\r${frames[frame++ % frames.length]} ${label} ${((Date.now() - started) / 1000).toFixed(1)}s\x1b[K`);
  draw();
  const timer = setInterval(draw, 100);
  return {
    stop() {
      clearInterval(timer);
      ctx.stderr.write('\r\x1b[K');
    },
  };
}

function incidentLine(incident: IncidentRecordWire): string {
  const verb = incident.action === 'revoke' ? 'revoked' : 'rotated';
  const skipped = incident.plannedCount - incident.keyCount;
  return `Incident ${incident.id} ${incident.status}: ${verb} ${incident.keyCount} of ${incident.plannedCount} planned key${incident.plannedCount === 1 ? '' : 's'}${skipped > 0 ? ` (${skipped} changed meanwhile and were left alone)` : ''}.`;
}

/** Writes the new keys as JSON lines, mode 0600, refusing to overwrite a file. */
async function writeKeys(file: string, keys: NonNullable<IncidentResultWire['keys']>): Promise<void> {
  const text = keys.map((k) => JSON.stringify({ id: k.id, replaces: k.replaces, key: k.key })).join('\n');
  await writeFile(file, keys.length > 0 ? `${text}\n` : '', { mode: 0o600, flag: 'wx' });
}

function act(action: Action): (ctx: CommandContext) => Promise<CommandResult> {
  return async (ctx) => {
    const select = optionString(ctx, 'select');
    if (select === undefined || select.trim() === '') {
      throw new UsageError('--select is required, for example --select owner=alice,env=live or --select label=team=payments,createdBefore=2026-11-01T00:00:00Z');
    }
    const dryRun = optionFlag(ctx, 'dry-run');
    const reason = optionString(ctx, 'reason');
    if (!dryRun && (reason === undefined || reason.trim() === '')) throw new UsageError('--reason is required: it is kept on the incident and on every key');
    const yes = optionFlag(ctx, 'yes');
    const interactive = ctx.stdin.isTTY === true && ctx.stderr.isTTY === true;
    if (!dryRun && !yes && (ctx.json || !interactive)) {
      throw new UsageError(`${ctx.json ? '--json' : 'without a terminal'} there is no one to ask: add --yes to ${action} without confirmation (try --dry-run first)`);
    }
    const overlap = action === 'rotate' ? optionString(ctx, 'overlap') : undefined;
    const out = action === 'rotate' ? optionString(ctx, 'out') : undefined;
    if (out !== undefined && !dryRun && existsSync(out)) throw new UsageError(`--out ${out} already exists; new keys are never written over a file`);

    const client = clientFrom(ctx);
    const body = { action, select, reason: reason ?? 'dry run', ...(overlap !== undefined ? { overlap } : {}) };
    const plan = await client.planIncident(body);
    if (dryRun) return { data: plan, text: `${planText(plan, 'Dry run')}\nNothing was changed.` };
    if (plan.total === 0) return { data: { plan, incident: null }, text: `${planText(plan, 'Plan')}\nNothing to do; nothing was changed.` };
    if (!ctx.json) ctx.stdout.write(`${planText(plan, 'Plan')}\n\n`);
    if (!yes && !(await confirmed(ctx, `${action === 'revoke' ? 'Revoke' : 'Rotate'} ${plan.total} key${plan.total === 1 ? '' : 's'}? Type "yes" to go on: `))) {
      throw new RefusedError('not confirmed; nothing was changed', 'not_confirmed');
    }

    const spin = spinner(ctx, `${action === 'revoke' ? 'Revoking' : 'Rotating'} ${plan.total} keys on the server…`);
    let result: IncidentResultWire;
    try {
      result = await client.createIncident(body);
    } finally {
      spin.stop();
    }
    const { incident } = result;
    progressBar(ctx.stderr, action === 'revoke' ? 'Revoked' : 'Rotated', !ctx.json).update(incident.keyCount, incident.keyCount);
    const exitCode = incident.status === 'done' ? 0 : 1;
    if (action === 'revoke') return { data: { incident }, text: incidentLine(incident), exitCode };

    const keys = result.keys ?? [];
    if (out !== undefined) {
      try {
        await writeKeys(out, keys);
        const text = [incidentLine(incident), `Wrote ${keys.length} new key${keys.length === 1 ? '' : 's'} to ${out} (JSON lines, mode 0600). They cannot be shown again.`].join('\n');
        return { data: { incident, keysFile: out, keyCount: keys.length }, text, exitCode };
      } catch (error) {
        // The keys exist now and are nowhere else: show them rather than lose them.
        ctx.stderr.write(`Warning: cannot write ${out} (${(error as NodeJS.ErrnoException).code ?? 'error'}); the new keys follow instead.\n`);
      }
    }
    const lines = [
      incidentLine(incident),
      `The old keys stay valid for the overlap (${incident.overlap ?? 'default'}); move every client to its new key before then.`,
      '',
      'New keys (shown once and cannot be shown again: store them now, in a secret manager, not a chat or a ticket):',
      table(keys, ['id', 'replaces', 'key']),
    ];
    return { data: { incident, keys }, text: lines.join('\n'), exitCode };
  };
}

const revokeCommand: Command = {
  name: 'incident revoke',
  summary: 'Revoke every service key a selector picks, now (break glass); shows the plan and asks first',
  usage: '--select owner=…,env=…,label=k=v,key=key_…,createdBefore=TIME --reason TEXT [--dry-run] [--yes] [--json]',
  options: actOptions,
  positionals: { min: 0, max: 0 },
  run: act('revoke'),
};

const rotateCommand: Command = {
  name: 'incident rotate',
  summary: 'Rotate every service key a selector picks; old keys stay valid for the overlap; new keys shown once',
  usage: '--select SELECTOR --reason TEXT [--overlap 24h] [--out FILE] [--dry-run] [--yes] [--json]',
  options: { ...actOptions, overlap: { type: 'string' }, out: { type: 'string' } },
  positionals: { min: 0, max: 0 },
  run: act('rotate'),
};

const listCommand: Command = {
  name: 'incident list',
  summary: 'List incidents, newest first',
  usage: '[--limit 50] [--cursor C] [--json]',
  options: { ...clientOptions, limit: { type: 'string' }, cursor: { type: 'string' } },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const limit = integerOption(ctx, 'limit');
    const cursor = optionString(ctx, 'cursor');
    const page = await clientFrom(ctx).listIncidents({ ...(limit !== undefined ? { limit } : {}), ...(cursor !== undefined ? { cursor } : {}) });
    const lines = [table(page.data, ['id', 'action', 'status', 'keyCount', 'select', 'startedAt', 'createdBy'])];
    if (page.nextCursor !== null) lines.push('', `More incidents: add --cursor ${page.nextCursor}`);
    return { data: page, text: lines.join('\n') };
  },
};

const showCommand: Command = {
  name: 'incident show',
  summary: 'Show one incident',
  usage: '<incident-id> [--json]',
  options: clientOptions,
  positionals: { min: 1, max: 1, names: '<incident-id>' },
  async run(ctx) {
    const id = ctx.positionals[0] ?? '';
    if (!INCIDENT_ID_RE.test(id)) throw new UsageError(`"${id.slice(0, 40)}" is not an incident id; incident ids look like inc_ followed by 22 letters and digits`);
    const incident = await clientFrom(ctx).getIncident(id);
    const entries: Array<readonly [string, unknown]> = [
      ['id', incident.id],
      ['action', incident.action],
      ['status', incident.status],
      ['select', incident.select],
      ['reason', incident.reason],
      ['keys', `${incident.keyCount} of ${incident.plannedCount} planned`],
      ...(incident.overlap !== null ? [['overlap', incident.overlap] as const] : []),
      ['startedAt', incident.startedAt],
      ['finishedAt', incident.finishedAt],
      ['createdBy', incident.createdBy],
      ...(incident.failure !== null ? [['failure', incident.failure] as const] : []),
    ];
    return { data: incident, text: fields(entries) };
  },
};

export const incidentCommands: readonly Command[] = [revokeCommand, rotateCommand, listCommand, showCommand];
