/**
 * The pure planner behind `keysmith rotation plan` and `apply`: what the desired policies
 * (a file) would change on the server's current ones, as terraform's plan does. Both sides are
 * normalised first, so a default written out and a default left implicit compare equal.
 */
import { normalisePolicy, type RotationPolicy } from './policy.js';

export interface PolicyUpdate {
  readonly name: string;
  /** Dotted paths of the fields that differ: `schedule.every`, `healthChecks.0.url`. */
  readonly changes: string[];
  readonly policy: RotationPolicy;
}

export interface PolicyPlan {
  readonly create: RotationPolicy[];
  readonly update: PolicyUpdate[];
  /** Names on the server that the file does not have. */
  readonly delete: string[];
  readonly unchanged: string[];
}

export function planPolicies(desired: readonly RotationPolicy[], current: readonly RotationPolicy[]): PolicyPlan {
  const existing = new Map(current.map((policy) => [policy.name, normalisePolicy(policy)]));
  const plan: PolicyPlan = { create: [], update: [], delete: [], unchanged: [] };
  for (const wanted of desired.map(normalisePolicy)) {
    const stored = existing.get(wanted.name);
    existing.delete(wanted.name);
    if (stored === undefined) plan.create.push(wanted);
    else {
      const changes = changedFields(stored, wanted);
      if (changes.length === 0) plan.unchanged.push(wanted.name);
      else plan.update.push({ name: wanted.name, changes, policy: wanted });
    }
  }
  plan.delete.push(...existing.keys());
  for (const list of [plan.create, plan.update] as const) list.sort((a, b) => a.name.localeCompare(b.name));
  plan.delete.sort();
  plan.unchanged.sort();
  return plan;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** The dotted paths at which two JSON values differ; empty when they are deeply equal. */
export function changedFields(before: unknown, after: unknown, prefix = ''): string[] {
  const here = prefix === '' ? '(value)' : prefix;
  const join = (part: string | number) => (prefix === '' ? String(part) : `${prefix}.${part}`);
  if (isRecord(before) && isRecord(after)) {
    const names = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return names.flatMap((name) => changedFields(before[name], after[name], join(name)));
  }
  if (Array.isArray(before) && Array.isArray(after)) {
    if (before.length !== after.length) return [here];
    return before.flatMap((item, index) => changedFields(item, after[index], join(index)));
  }
  return Object.is(before, after) ? [] : [here];
}
