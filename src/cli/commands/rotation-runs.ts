/**
 * Rotation runs from the command line: `keysmith rotate key|secret` starts one (and with
 * `--wait` follows it, a bar over its steps, until the new credential is current or the run
 * ends), `rotation runs|show|rollback|stats` read and undo them. Nothing here prints a
 * credential: a rotated key is in the vault, at the path `show` names.
 */
import type { RotationRunDetailWire, RotationRunWire, StartRotationBodyWire } from '../../contract/index.js';
import { optionFlag, optionString, RefusedError, UsageError, type Command, type CommandContext, type CommandResult } from '../command.js';
import { clientFrom, clientOptions } from '../client.js';
import { integerOption, oneOf } from '../options.js';
import { watchProgress } from '../progress.js';
import { fields, table } from '../render.js';
import { evidenceText } from '../../rotation/index.js';

const FORWARD = ['create', 'set', 'test', 'promote', 'deploy', 'gate'] as const;
const RUN_ID_RE = /^rot_[0-9A-Za-z]{22}$/;

const startOptions = { ...clientOptions, reason: { type: 'string' }, wait: { type: 'boolean' } } as const;

function runId(ctx: CommandContext): string {
  const id = ctx.positionals[0]!;
  if (!RUN_ID_RE.test(id)) throw new UsageError(`${id.slice(0, 40)} is not a run id (rot_ followed by 22 letters and digits)`);
  return id;
}

/** Where a run is, for the bar: steps done of the forward steps. */
function measure(run: RotationRunDetailWire): { done: number; total: number } {
  const total = FORWARD.length;
  if (run.status !== 'running' || run.promotedAt !== null) return { done: total, total };
  return { done: Math.max(0, FORWARD.indexOf(run.step as (typeof FORWARD)[number])), total };
}

async function start(ctx: CommandContext, body: StartRotationBodyWire): Promise<CommandResult> {
  const client = clientFrom(ctx);
  const started = await client.startRotation({ ...body, trigger: 'manual', ...(optionString(ctx, 'reason') ? { reason: optionString(ctx, 'reason')! } : {}) });
  if (!optionFlag(ctx, 'wait')) {
    return { data: started, text: `Started ${started.id} (${started.target.kind} ${started.target.id}, connector ${started.connector}).\nFollow it with: keysmith rotation show ${started.id}` };
  }
  const watched = await watchProgress({
    read: () => client.getRotation(started.id),
    finished: (run) => run.status !== 'running' || run.promotedAt !== null,
    stream: ctx.stderr,
    label: `Rotating ${started.target.id}`,
    draw: !ctx.json,
    measure,
    stopSignal: ctx.stopSignal,
    intervalMs: 250,
  });
  const run = watched.value;
  const failed = run.status === 'failed' || run.status === 'rolled_back';
  const lines = [runSummary(run)];
  if (run.deliveredTo !== null && !failed) lines.push(`The new credential is in the vault at ${run.deliveredTo}: keysmith secrets get ${run.deliveredTo}`);
  if (run.status === 'running') lines.push(`The run goes on (${run.step}); the old credential is revoked once it is safe. Follow it with: keysmith rotation show ${run.id}`);
  if (failed) throw new RefusedError(`${run.id} ${run.status.replace('_', ' ')}: ${run.error ?? 'see keysmith rotation show'}`, run.status, run);
  return { data: run, text: lines.join('\n') };
}

function runSummary(run: RotationRunWire): string {
  return `${run.id}: ${run.status}${run.status === 'running' ? ` at ${run.step}` : ''} (${run.target.kind} ${run.target.id})`;
}

const rotateKeyCommand: Command = {
  name: 'rotate key',
  summary: 'Rotate an issued key now, through the policy that covers it (or with --overlap when none does)',
  usage: '<key-id> [--reason R] [--overlap 24h] [--wait] [--json]',
  options: { ...startOptions, overlap: { type: 'string' } },
  positionals: { min: 1, max: 1, names: '<key-id>' },
  run(ctx) {
    const overlap = optionString(ctx, 'overlap');
    return start(ctx, { key: ctx.positionals[0]!, ...(overlap ? { overlap } : {}) });
  },
};

const rotateSecretCommand: Command = {
  name: 'rotate secret',
  summary: 'Rotate a secret now, through the rotation policy that names it',
  usage: '<path> [--reason R] [--wait] [--json]',
  options: startOptions,
  positionals: { min: 1, max: 1, names: '<path>' },
  run: (ctx) => start(ctx, { secret: ctx.positionals[0]! }),
};

const runsCommand: Command = {
  name: 'rotation runs',
  summary: 'List rotation runs, newest first',
  usage: '[--status running|done|failed|rolled_back] [--policy NAME] [--target ID|PATH] [--limit N] [--cursor C] [--json]',
  options: { ...clientOptions, status: { type: 'string' }, policy: { type: 'string' }, target: { type: 'string' }, limit: { type: 'string' }, cursor: { type: 'string' } },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const status = oneOf(ctx, 'status', ['running', 'done', 'failed', 'rolled_back'] as const);
    const limit = integerOption(ctx, 'limit');
    const page = await clientFrom(ctx).listRotations({
      ...(status ? { status } : {}),
      ...(optionString(ctx, 'policy') ? { policy: optionString(ctx, 'policy')! } : {}),
      ...(optionString(ctx, 'target') ? { target: optionString(ctx, 'target')! } : {}),
      ...(limit !== undefined ? { limit } : {}),
      ...(optionString(ctx, 'cursor') ? { cursor: optionString(ctx, 'cursor')! } : {}),
    });
    const rows = page.data.map((run) => ({
      id: run.id,
      status: run.status,
      step: run.step,
      target: run.target.id,
      policy: run.policy ?? '-',
      trigger: run.trigger,
      reason: run.reason ?? '',
      createdAt: run.createdAt,
    }));
    const more = page.nextCursor ? `\nMore: --cursor ${page.nextCursor}` : '';
    return { data: page, text: `${table(rows, ['id', 'status', 'step', 'target', 'policy', 'trigger', 'reason', 'createdAt'])}${more}` };
  },
};

const showCommand: Command = {
  name: 'rotation show',
  summary: "A run's timeline: every step with its times, outcome and evidence (never a secret)",
  usage: '<run-id> [--json]',
  options: clientOptions,
  positionals: { min: 1, max: 1, names: '<run-id>' },
  async run(ctx) {
    const run = await clientFrom(ctx).getRotation(runId(ctx));
    const head = fields([
      ['id', run.id],
      ['status', run.status],
      ['step', run.step],
      ['target', `${run.target.kind} ${run.target.id}`],
      ['policy', run.policy ?? '(none)'],
      ['connector', run.connector],
      ['trigger', `${run.trigger}${run.reason ? ` (${run.reason})` : ''}`],
      ['old credential', run.oldCredential.vendorId ?? (run.oldCredential.version !== null ? `version ${run.oldCredential.version}` : '-')],
      ['new credential', run.newCredential.vendorId ?? (run.newCredential.version !== null ? `version ${run.newCredential.version}` : '-')],
      ['delivered to', run.deliveredTo ?? '-'],
      ['overlap ends', run.overlapEndsAt ?? '-'],
      ['created', `${run.createdAt} by ${run.createdBy}`],
      ['promoted', run.promotedAt ?? '-'],
      ['finished', run.finishedAt ?? '-'],
      ...(run.error ? ([['error', run.error]] as const) : []),
      ...(run.oldKept ? ([['old kept', 'yes: it was still in use when the overlap ended']] as const) : []),
    ]);
    const timeline = table(
      run.timeline.map((step) => ({ seq: step.seq, step: step.step, outcome: step.outcome, started: step.startedAt, finished: step.finishedAt, evidence: evidenceText(step.evidence), error: step.error ?? '' })),
      ['seq', 'step', 'outcome', 'started', 'finished', 'evidence', 'error'],
    );
    const revocations = run.revocations.length === 0
      ? 'Revocations: none'
      : `Revocations:\n${table(
          run.revocations.map((revocation) => ({ which: revocation.which, credential: revocation.vendorId ?? `version ${revocation.version}`, status: revocation.status, notBefore: revocation.notBefore, attempts: revocation.attempts, lastError: revocation.lastError ?? '' })),
          ['which', 'credential', 'status', 'notBefore', 'attempts', 'lastError'],
        )}`;
    return { data: run, text: `${head}\n\nTimeline:\n${timeline}\n\n${revocations}` };
  },
};

const rollbackCommand: Command = {
  name: 'rotation rollback',
  summary: 'Undo a finished run while its old credential is not yet revoked: the old one is current again, the new one retired',
  usage: '<run-id> [--json]',
  options: clientOptions,
  positionals: { min: 1, max: 1, names: '<run-id>' },
  async run(ctx) {
    const run = await clientFrom(ctx).rollbackRotation(runId(ctx));
    return { data: run, text: `${runSummary(run)}\nThe old credential is current again; the new one is being revoked.` };
  },
};

const statsCommand: Command = {
  name: 'rotation stats',
  summary: 'Rotation success rate, median time to rotate (scheduled, incident, manual), rollbacks and revocations owed',
  usage: '[--json]',
  options: clientOptions,
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const stats = await clientFrom(ctx).rotationStats();
    const seconds = (value: number | null) => (value === null ? '-' : `${value.toFixed(1)} s`);
    const text = fields([
      ['runs', `${stats.runs.running} running, ${stats.runs.done} done, ${stats.runs.failed} failed, ${stats.runs.rolled_back} rolled back`],
      ['success rate', stats.successRate === null ? '-' : `${(stats.successRate * 100).toFixed(1)}%`],
      ['median time to rotate (scheduled)', seconds(stats.medianSecondsToRotate.scheduled)],
      ['median time to rotate (incident)', seconds(stats.medianSecondsToRotate.incident)],
      ['median time to rotate (manual)', seconds(stats.medianSecondsToRotate.manual)],
      ['rolled back', stats.rolledBack],
      ['old credentials awaiting revocation', stats.awaitingRevocation],
    ]);
    return { data: stats, text };
  },
};

export const rotateCommands: readonly Command[] = [rotateKeyCommand, rotateSecretCommand];
export const rotationRunCommands: readonly Command[] = [runsCommand, showCommand, rollbackCommand, statsCommand];
