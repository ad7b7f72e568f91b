/**
 * `keysmith rotation plan|apply|policies`: rotation policies as code, as terraform does it. The
 * file is checked here (every problem as `FILE:LINE:COL message`, exit 2), a pure planner diffs
 * it against the server, and `apply` carries out the plan with check-and-set on each policy's
 * version, so a change made meanwhile by someone else is refused rather than overwritten.
 * Deletions happen only with `--prune`. The server checks every policy again on its own limits.
 */
import { readFile, stat } from 'node:fs/promises';
import type { RotationPolicyRecordWire } from '../../contract/index.js';
import { DEFAULT_KEY_POLICY } from '../../keys/index.js';
import { MAX_POLICY_FILE_BYTES, connectorSettingsCheck, parsePolicyFile, planPolicies, type FileProblem, type PolicyPlan, type RotationPolicy } from '../../rotation/index.js';
import { KeysmithApiError, type KeysmithClient } from '../../sdk/index.js';
import { RefusedError, UsageError, optionFlag, optionString, type Command, type CommandContext, type CommandResult } from '../command.js';
import { clientFrom, clientOptions } from '../client.js';
import { table } from '../render.js';

const fileOptions = { ...clientOptions, file: { type: 'string', short: 'f' } } as const;

interface LoadedFile {
  readonly file: string;
  readonly policies?: RotationPolicy[];
  readonly problems?: FileProblem[];
}

async function loadFile(ctx: CommandContext): Promise<LoadedFile> {
  const file = optionString(ctx, 'file');
  if (file === undefined) throw new UsageError('give the policy file with -f FILE');
  let text: string;
  try {
    if ((await stat(file)).size > MAX_POLICY_FILE_BYTES) throw new UsageError(`${file} is larger than ${MAX_POLICY_FILE_BYTES} bytes`);
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  // The server's key policy may be stricter; it checks every policy again on apply.
  const parsed = parsePolicyFile(text, { maxOverlapMs: DEFAULT_KEY_POLICY.maxTtlMs }, connectorSettingsCheck());
  return parsed.ok ? { file, policies: parsed.policies } : { file, problems: parsed.problems };
}

/** A refused file: every problem on stderr as `FILE:LINE:COL message` (or as JSON), exit 2. */
function fileRefused(ctx: CommandContext, file: string, problems: readonly FileProblem[]): CommandResult {
  const data = { file, problems };
  if (ctx.json) return { data, exitCode: 2 };
  ctx.stderr.write(`${problems.map((problem) => `${file}:${problem.line}:${problem.column} ${problem.message}`).join('\n')}\n`);
  return { data, exitCode: 2, output: 'none' };
}

async function currentPolicies(client: KeysmithClient): Promise<Map<string, RotationPolicyRecordWire>> {
  const { data } = await client.listRotationPolicies();
  return new Map(data.map((record) => [record.name, record]));
}

/** The plan as data: names and changed fields, without the policies themselves. */
function planData(file: string, plan: PolicyPlan) {
  return {
    file,
    create: plan.create.map((policy) => policy.name),
    update: plan.update.map(({ name, changes }) => ({ name, changes })),
    delete: plan.delete,
    unchanged: plan.unchanged,
  };
}

/** The heading, then a line per change: `+ name`, `~ name (fields)`, `- name<note>`. */
function planText(heading: string, plan: PolicyPlan, deleteNote: string): string {
  const lines = [
    ...plan.create.map((policy) => `+ ${policy.name}`),
    ...plan.update.map(({ name, changes }) => `~ ${name} (${changes.join(', ')})`),
    ...plan.delete.map((name) => `- ${name}${deleteNote}`),
  ];
  return [heading, ...(lines.length > 0 ? ['', ...lines] : [])].join('\n');
}

function counted(plan: PolicyPlan, verbs: readonly [string, string, string]): string {
  return `${plan.create.length} ${verbs[0]}, ${plan.update.length} ${verbs[1]}, ${plan.delete.length} ${verbs[2]}, ${plan.unchanged.length} unchanged`;
}

interface Planned {
  readonly file: string;
  readonly plan: PolicyPlan;
  readonly current: Map<string, RotationPolicyRecordWire>;
}

/** A command run that works on the file's plan; a bad file is refused before the server is asked. */
function withPlan(work: (ctx: CommandContext, planned: Planned) => Promise<CommandResult>): (ctx: CommandContext) => Promise<CommandResult> {
  return async (ctx) => {
    const loaded = await loadFile(ctx);
    if (loaded.problems !== undefined) return fileRefused(ctx, loaded.file, loaded.problems);
    const current = await currentPolicies(clientFrom(ctx));
    const plan = planPolicies(loaded.policies ?? [], [...current.values()].map((record) => record.policy as RotationPolicy));
    return work(ctx, { file: loaded.file, plan, current });
  };
}

const planCommand: Command = {
  name: 'rotation plan',
  summary: 'Show what applying a rotation policy file would change on the server (+ create, ~ update, - delete)',
  usage: '-f FILE [--json]',
  options: fileOptions,
  positionals: { min: 0, max: 0 },
  run: withPlan(async (_ctx, { file, plan }) => {
    const heading = `Plan for ${file}: ${counted(plan, ['to create', 'to update', 'not in the file'])}.`;
    return { data: planData(file, plan), text: planText(heading, plan, ' (only with apply --prune)') };
  }),
};

const applyCommand: Command = {
  name: 'rotation apply',
  summary: 'Create and update the rotation policies of a file on the server; --prune also deletes the ones the file does not have',
  usage: '-f FILE [--prune] [--json]',
  options: { ...fileOptions, prune: { type: 'boolean' } },
  positionals: { min: 0, max: 0 },
  run: withPlan(async (ctx, { file, plan, current }) => {
    const prune = optionFlag(ctx, 'prune');
    const client = clientFrom(ctx);
    const done: string[] = [];
    const step = async (name: string, work: () => Promise<unknown>) => {
      try {
        await work();
        done.push(name);
      } catch (error) {
        if (!(error instanceof KeysmithApiError)) throw error;
        const before = done.length > 0 ? ` (applied before it: ${done.join(', ')})` : ' (nothing was applied)';
        throw new RefusedError(`policy ${name}: ${error.message}${before}`, error.error);
      }
    };
    for (const policy of plan.create) await step(policy.name, () => client.putRotationPolicy(policy.name, { policy, version: 0 }));
    for (const { name, policy } of plan.update) await step(name, () => client.putRotationPolicy(name, { policy, version: current.get(name)!.version }));
    if (prune) for (const name of plan.delete) await step(name, () => client.deleteRotationPolicy(name, { version: current.get(name)!.version }));
    const heading = `Applied ${file}: ${counted({ ...plan, delete: prune ? plan.delete : [] }, ['created', 'updated', 'deleted'])}${!prune && plan.delete.length > 0 ? `, ${plan.delete.length} left alone` : ''}.`;
    const data = { ...planData(file, plan), delete: prune ? plan.delete : [], leftAlone: prune ? [] : plan.delete };
    return { data, text: planText(heading, plan, prune ? '' : ' (left alone; apply --prune deletes it)') };
  }),
};

function scheduleText(policy: RotationPolicyRecordWire['policy']): string {
  return policy.schedule.every !== undefined ? `every ${policy.schedule.every}` : `cron "${policy.schedule.cron}" within ${policy.schedule.window}`;
}

function targetText(policy: RotationPolicyRecordWire['policy']): string {
  const { key, keys, secret } = policy.target;
  if (key !== undefined) return key;
  if (secret !== undefined) return `secret ${secret}`;
  const labels = Object.entries(keys?.labels ?? {}).map(([name, value]) => `${name}=${value}`);
  return `keys ${[...(keys?.owner !== undefined ? [`owner=${keys.owner}`] : []), ...labels].join(',')}`;
}

const policiesCommand: Command = {
  name: 'rotation policies',
  summary: 'List the rotation policies on the server',
  usage: '[--json]',
  options: clientOptions,
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const list = await clientFrom(ctx).listRotationPolicies();
    const rows = list.data.map((record) => ({
      name: record.name,
      version: record.version,
      target: targetText(record.policy),
      schedule: scheduleText(record.policy),
      overlap: record.policy.overlap,
      connector: record.policy.connector.type,
      enabled: record.policy.enabled === false ? 'no' : 'yes',
      updatedAt: record.updatedAt,
    }));
    return { data: list, text: table(rows, ['name', 'version', 'target', 'schedule', 'overlap', 'connector', 'enabled', 'updatedAt']) };
  },
};

export const rotationCommands: readonly Command[] = [planCommand, applyCommand, policiesCommand];
