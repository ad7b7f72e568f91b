/**
 * Rotation policies: the model and a pure validator. The wire schema (contract/rotation.ts)
 * checks shapes and refuses unknown fields; the rules here refuse what is well formed but unsafe
 * (a schedule under an hour, an overlap the key class does not allow or that outlasts the
 * interval, a connector that cannot rotate the target). Every problem carries the path of the
 * offending field, so a file loader can turn it into a line.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import {
  RotationPolicySpec,
  CONNECTOR_TYPES,
  SECRET_PATH_PATTERN,
  type ConnectorType,
  type RotationPolicySpecWire,
} from '../contract/index.js';
import { formatDuration, tryParseDuration } from '../shared/duration.js';
import { parseCron, smallestCronGapMs } from './cron.js';

export type PolicyPath = ReadonlyArray<string | number>;

export interface PolicyProblem {
  readonly path: PolicyPath;
  readonly message: string;
}

/** A policy with its defaults filled in: what is stored, compared and planned. */
export interface RotationPolicy extends RotationPolicySpecWire {
  readonly healthChecks: Array<{ url: string; expect: '2xx'; consecutive: number; within: string }>;
  readonly onOverlapEnd: 'revoke' | 'extend' | 'keep';
  readonly onFailure: 'rollback' | 'alert';
  readonly enabled: boolean;
}

export interface PolicyLimits {
  /** The longest overlap the key class allows (the key policy's maximum lifetime). */
  readonly maxOverlapMs: number;
  /** The shortest schedule interval; one hour unless given. */
  readonly minIntervalMs?: number;
}

export type PolicyCheck = { readonly ok: true; readonly policy: RotationPolicy } | { readonly ok: false; readonly problems: PolicyProblem[] };

export interface PolicySetCheck {
  readonly policies: RotationPolicy[];
  readonly problems: PolicyProblem[];
}

export interface PolicyValidator {
  /** Checks one policy; problem paths start at the policy. */
  check(input: unknown): PolicyCheck;
  /** Checks a list (names must be unique); problem paths start with the index. */
  checkAll(inputs: readonly unknown[]): PolicySetCheck;
}

export const HOUR_MS = 3_600_000;
/** The shortest quiet period the traffic gate accepts. */
export const MIN_QUIET_PERIOD_MS = 2 * 60_000;
const KEY_ID_RE = /^key_[0-9A-Za-z]{22}$/;
const SECRET_PATH_RE = new RegExp(SECRET_PATH_PATTERN);
const KEY_CONNECTORS: ReadonlySet<ConnectorType> = new Set(['keysmith-key']);

/**
 * What the validator asks of the connector registry: the settings problems of a connector block,
 * and (with the server's configuration) whether a health check or deploy hook URL's host is in
 * the egress allowlist and a deploy hook's program is registered.
 */
export interface ConnectorSettingsCheck {
  validate(type: unknown, settings: unknown): string[];
  checkUrl?(url: string): string | undefined;
  checkProgram?(name: string, args: readonly string[]): string[];
}

export function createPolicyValidator(limits: PolicyLimits, connectors?: ConnectorSettingsCheck): PolicyValidator {
  const ajv = new Ajv({ allErrors: true, strict: false, coerceTypes: false, useDefaults: false });
  const shape = ajv.compile<RotationPolicySpecWire>(RotationPolicySpec);
  const check = (input: unknown): PolicyCheck => {
    if (!shape(input)) return { ok: false, problems: shapeProblems(shape) };
    const problems = safetyProblems(input, limits);
    // Settings are judged only for a connector that fits the target: otherwise the type is the problem.
    if (connectors !== undefined && !problems.some((problem) => problem.path[0] === 'connector' && problem.path[1] === 'type')) {
      for (const message of connectors.validate(input.connector.type, input.connector.settings ?? {})) problems.push({ path: settingsPath(message), message });
    }
    if (connectors !== undefined) problems.push(...outboundProblems(input, connectors, problems));
    return problems.length > 0 ? { ok: false, problems } : { ok: true, policy: normalisePolicy(input) };
  };
  return {
    check,
    checkAll(inputs) {
      const policies: RotationPolicy[] = [];
      const problems: PolicyProblem[] = [];
      const seen = new Map<string, number>();
      inputs.forEach((input, index) => {
        const result = check(input);
        if (!result.ok) {
          problems.push(...result.problems.map((problem) => ({ path: [index, ...problem.path], message: problem.message })));
          return;
        }
        const first = seen.get(result.policy.name);
        if (first !== undefined) {
          problems.push({ path: [index, 'name'], message: `policy name "${result.policy.name}" is already used by policy ${first + 1}` });
          return;
        }
        seen.set(result.policy.name, index);
        policies.push(result.policy);
      });
      return { policies, problems };
    },
  };
}

/** A settings problem names its field first (`program …`, `create.url: …`): point the path at it. */
function settingsPath(message: string): PolicyPath {
  const field = /^([A-Za-z]+)(?:\.([A-Za-z0-9_]+))?[ :]/.exec(message);
  const known = new Set(['program', 'args', 'command', 'env', 'secrets', 'timeout', 'create', 'set', 'test', 'revoke', 'adminSecret']);
  if (!field || !known.has(field[1]!)) return ['connector', 'settings'];
  const sub = field[2] === undefined ? [] : /^\d+$/.test(field[2]) ? [Number(field[2])] : [field[2]];
  return ['connector', 'settings', field[1]!, ...sub];
}

/** Health check and deploy hook URLs the egress allowlist refuses; a deploy hook program that is not registered. */
function outboundProblems(spec: RotationPolicySpecWire, check: ConnectorSettingsCheck, already: readonly PolicyProblem[]): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  const reported = (path: PolicyPath) => already.some((problem) => problem.path.join('.') === path.join('.'));
  (spec.healthChecks ?? []).forEach((healthCheck, index) => {
    const path = ['healthChecks', index, 'url'];
    const refused = reported(path) ? undefined : check.checkUrl?.(healthCheck.url);
    if (refused !== undefined) problems.push({ path, message: `healthChecks.${index}.url: ${refused}` });
  });
  const hook = spec.deployHook;
  if (hook?.url !== undefined && !reported(['deployHook', 'url'])) {
    const refused = check.checkUrl?.(hook.url);
    if (refused !== undefined) problems.push({ path: ['deployHook', 'url'], message: `deployHook.url: ${refused}` });
  }
  if (hook?.program !== undefined) {
    for (const message of check.checkProgram?.(hook.program, hook.args ?? []) ?? []) {
      const arg = /^args\.(\d+)/.exec(message);
      problems.push({ path: arg ? ['deployHook', 'args', Number(arg[1])] : ['deployHook', 'program'], message: `deployHook.${message}` });
    }
  }
  return problems;
}

function pointerPath(pointer: string): Array<string | number> {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((part) => (/^(0|[1-9][0-9]*)$/.test(part) ? Number(part) : part));
}

function shapeProblems(validate: ValidateFunction): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  for (const error of validate.errors ?? []) {
    const problem = shapeProblem(error);
    if (!problems.some((seen) => seen.message === problem.message && seen.path.join('.') === problem.path.join('.'))) problems.push(problem);
  }
  return problems;
}

function shapeProblem(error: ErrorObject): PolicyProblem {
  const path = pointerPath(error.instancePath);
  const where = path.length > 0 ? path.join('.') : 'policy';
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'additionalProperties':
      return { path: [...path, String(params.additionalProperty)], message: `unknown field "${String(params.additionalProperty).slice(0, 60)}" in ${where}` };
    case 'required':
      return { path, message: `${where} needs the field "${String(params.missingProperty)}"` };
    case 'enum': {
      const allowed = (params.allowedValues as string[]).join(', ');
      if (path.join('.') === 'connector.type') return { path, message: `unknown connector type; use one of ${allowed}` };
      return { path, message: `${where} must be one of ${allowed}` };
    }
    case 'pattern':
      return { path, message: path.at(-1) === 'name' ? `${where} must be lowercase letters, digits and "-", starting with a letter or digit, at most 63 characters` : `${where} is not well formed` };
    default:
      return { path, message: `${where} ${error.message ?? 'is not valid'}` };
  }
}

/** The rules a well-shaped policy must still meet. */
function safetyProblems(spec: RotationPolicySpecWire, limits: PolicyLimits): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  const refuse = (path: PolicyPath, message: string) => problems.push({ path, message });
  const duration = (path: PolicyPath, text: string | undefined): number | undefined => {
    if (text === undefined) return undefined;
    const ms = tryParseDuration(text);
    if (ms === undefined) refuse(path, `${path.join('.')} must be a positive duration such as 90s, 15m, 24h or 30d`);
    return ms;
  };

  const targetKind = targetProblems(spec, refuse);
  const interval = scheduleInterval(spec, limits, refuse, duration);

  const overlap = duration(['overlap'], spec.overlap);
  if (overlap !== undefined) {
    if (overlap > limits.maxOverlapMs) refuse(['overlap'], `overlap ${spec.overlap} is longer than the key class allows (${formatDuration(limits.maxOverlapMs)})`);
    else if (interval !== undefined && overlap >= interval) refuse(['overlap'], `overlap ${spec.overlap} must be shorter than the schedule interval (${formatDuration(interval)})`);
  }

  const connector = spec.connector.type;
  if (targetKind !== undefined) {
    const wantsKey = KEY_CONNECTORS.has(connector);
    if (wantsKey && targetKind === 'secret') refuse(['connector', 'type'], `connector ${connector} rotates issued keys; a secret target needs one of ${CONNECTOR_TYPES.filter((type) => !KEY_CONNECTORS.has(type)).join(', ')}`);
    if (!wantsKey && targetKind !== 'secret') refuse(['connector', 'type'], `connector ${connector} rotates secrets; a key target needs keysmith-key`);
  }

  if (spec.deployHook !== undefined) {
    const { url, program, args, timeout } = spec.deployHook;
    if ((url === undefined) === (program === undefined)) refuse(['deployHook'], 'deployHook needs exactly one of url or program (a program registered in the server configuration)');
    else if (url !== undefined && !isHttpUrl(url)) refuse(['deployHook', 'url'], 'deployHook.url must be an http or https URL');
    if (args !== undefined && program === undefined) refuse(['deployHook', 'args'], 'deployHook.args goes with program');
    duration(['deployHook', 'timeout'], timeout);
  }
  (spec.healthChecks ?? []).forEach((check, index) => {
    if (!isHttpUrl(check.url)) refuse(['healthChecks', index, 'url'], `healthChecks.${index}.url must be an http or https URL`);
    duration(['healthChecks', index, 'within'], check.within);
  });
  const quiet = duration(['quietPeriod'], spec.quietPeriod);
  // Servers write a key's last use at most once a minute: a shorter quiet period could miss use on another server.
  if (quiet !== undefined && quiet < MIN_QUIET_PERIOD_MS) refuse(['quietPeriod'], `quietPeriod must be at least ${formatDuration(MIN_QUIET_PERIOD_MS)}: servers report a key's use once a minute`);
  if (quiet !== undefined && targetKind === 'secret') refuse(['quietPeriod'], 'quietPeriod applies to issued keys (the traffic gate), not to a secret');
  const extension = duration(['maxExtension'], spec.maxExtension);
  if (extension !== undefined && spec.onOverlapEnd !== 'extend') refuse(['maxExtension'], 'maxExtension applies only with onOverlapEnd: extend');
  else if (extension !== undefined && overlap !== undefined && overlap + extension > limits.maxOverlapMs) {
    refuse(['maxExtension'], `overlap plus maxExtension is longer than the key class allows (${formatDuration(limits.maxOverlapMs)})`);
  }
  return problems;
}

type Refuse = (path: PolicyPath, message: string) => void;

function targetProblems(spec: RotationPolicySpecWire, refuse: Refuse): 'key' | 'keys' | 'secret' | undefined {
  const kinds = (['key', 'keys', 'secret'] as const).filter((kind) => spec.target[kind] !== undefined);
  if (kinds.length !== 1) {
    refuse(['target'], `target needs exactly one of key, keys or secret${kinds.length > 1 ? ` (got ${kinds.join(' and ')})` : ''}`);
    return undefined;
  }
  const { key, keys, secret } = spec.target;
  if (key !== undefined && !KEY_ID_RE.test(key)) refuse(['target', 'key'], 'target.key must be a key id, key_ followed by 22 base62 characters');
  if (keys !== undefined && keys.owner === undefined && Object.keys(keys.labels ?? {}).length === 0) {
    refuse(['target', 'keys'], 'target.keys needs an owner or at least one label to choose keys by');
  }
  if (secret !== undefined && (!SECRET_PATH_RE.test(secret) || secret.split('/').some((part) => part === '.' || part === '..'))) {
    refuse(['target', 'secret'], 'target.secret must be a secret path such as payments/stripe/api-key');
  }
  return kinds[0];
}

/** The schedule's (smallest) interval, after refusing one that is malformed or too frequent. */
function scheduleInterval(
  spec: RotationPolicySpecWire,
  limits: PolicyLimits,
  refuse: Refuse,
  duration: (path: PolicyPath, text: string | undefined) => number | undefined,
): number | undefined {
  const { every, cron, window } = spec.schedule;
  const minimum = limits.minIntervalMs ?? HOUR_MS;
  if ((every === undefined) === (cron === undefined)) {
    refuse(['schedule'], 'schedule needs exactly one of every or cron');
    return undefined;
  }
  if (every !== undefined) {
    if (window !== undefined) refuse(['schedule', 'window'], 'schedule.window goes with cron, not every');
    const ms = duration(['schedule', 'every'], every);
    if (ms !== undefined && ms < minimum) {
      refuse(['schedule', 'every'], `schedule every ${every} is too frequent: rotate at most once every ${formatDuration(minimum)}`);
      return undefined;
    }
    return ms;
  }
  const parsed = parseCron(cron!);
  if (!parsed.ok) {
    refuse(['schedule', 'cron'], parsed.message);
    return undefined;
  }
  const gap = smallestCronGapMs(parsed.fields);
  if (gap === undefined) {
    refuse(['schedule', 'cron'], `cron "${cron}" never fires`);
    return undefined;
  }
  if (gap < minimum) {
    refuse(['schedule', 'cron'], `cron "${cron}" fires ${formatDuration(gap)} apart at the closest: rotate at most once every ${formatDuration(minimum)}`);
    return undefined;
  }
  if (window === undefined) refuse(['schedule'], 'a cron schedule needs a window (how long after the time a rotation may start)');
  else {
    const windowMs = duration(['schedule', 'window'], window);
    if (windowMs !== undefined && windowMs > gap) refuse(['schedule', 'window'], `schedule.window ${window} is longer than the time between firings (${formatDuration(gap)})`);
  }
  return gap;
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === 'https:' || url.protocol === 'http:';
  } catch {
    return false;
  }
}

/** Fills in the defaults, so two policies that mean the same compare equal. */
export function normalisePolicy(spec: RotationPolicySpecWire): RotationPolicy {
  return {
    ...spec,
    healthChecks: (spec.healthChecks ?? []).map((check) => ({
      url: check.url,
      expect: check.expect ?? '2xx',
      consecutive: check.consecutive ?? 3,
      within: check.within ?? '5m',
    })),
    onOverlapEnd: spec.onOverlapEnd ?? 'keep',
    onFailure: spec.onFailure ?? 'rollback',
    enabled: spec.enabled ?? true,
  };
}
