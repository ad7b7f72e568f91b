/**
 * What a rotation policy does on its author's behalf, as scopes. A stored policy acts later,
 * without its author present (the scheduler starts it), so it may never do more than its author
 * could: putting it needs every scope listed here, and each run re-checks them against the
 * author's token as it is then. Pure: the service and the engine decide with these.
 *
 * The vault paths a policy touches are named by fields, never guessed from its strings:
 *   target.secret                 read (the old value goes to the connector, e.g. revoke's {{key}}) and write
 *   connector.settings.deliverTo  write (keysmith-key delivers the new key there)
 *   connector.settings.adminSecret read (http, postgres: the admin credential)
 *   connector.settings.secrets.*  read (command: values handed to the program)
 * A keys target (target.key, target.keys) needs keys:rotate. Every policy needs rotation:run,
 * since the scheduler starts it for its author.
 */
import { hasScope, secretScope } from '../policy/index.js';
import type { RotationPolicy } from './policy.js';

/** One scope a policy needs, and the field that makes it needed. */
export interface PolicyNeed {
  readonly scope: string;
  readonly field: string;
}

/** A vault path a policy reads through its connector, and the field naming it. */
export interface VaultRead {
  readonly path: string;
  readonly field: string;
}

type PolicyShape = Pick<RotationPolicy, 'target' | 'connector'>;

/** The vault paths the connector may read: only these, whatever other strings the settings hold. */
export function policyReads(policy: PolicyShape): VaultRead[] {
  const settings = policy.connector.settings ?? {};
  const reads: VaultRead[] = [];
  if ((policy.connector.type === 'http' || policy.connector.type === 'postgres') && typeof settings.adminSecret === 'string') {
    reads.push({ path: settings.adminSecret, field: 'connector.settings.adminSecret' });
  }
  if (policy.connector.type === 'command') {
    const handed = settings.secrets;
    if (handed !== null && typeof handed === 'object' && !Array.isArray(handed)) {
      for (const [name, path] of Object.entries(handed as Record<string, unknown>)) {
        if (typeof path === 'string') reads.push({ path, field: `connector.settings.secrets.${name}` });
      }
    }
  }
  return reads;
}

/** What a caller needs to start a run of this policy's target now: change the target. */
export function targetNeeds(policy: Pick<RotationPolicy, 'target'>): PolicyNeed[] {
  const { target } = policy;
  if (target.secret !== undefined) return [{ scope: secretScope('secrets:write', target.secret), field: 'target.secret' }];
  if (target.key !== undefined) return [{ scope: 'keys:rotate', field: 'target.key' }];
  if (target.keys !== undefined) return [{ scope: 'keys:rotate', field: 'target.keys' }];
  return [];
}

/** Every scope the policy needs of its author, each with the field that needs it. */
export function policyNeedsByField(policy: PolicyShape): PolicyNeed[] {
  const needs: PolicyNeed[] = [{ scope: 'rotation:run', field: 'schedule' }];
  if (policy.target.secret !== undefined) needs.push({ scope: secretScope('secrets:read', policy.target.secret), field: 'target.secret' });
  needs.push(...targetNeeds(policy));
  const deliverTo = policy.connector.settings?.deliverTo;
  // Any connector: the engine delivers a key target's new key to deliverTo whatever the type says.
  if (typeof deliverTo === 'string') {
    needs.push({ scope: secretScope('secrets:write', deliverTo), field: 'connector.settings.deliverTo' });
  }
  for (const read of policyReads(policy)) needs.push({ scope: secretScope('secrets:read', read.path), field: read.field });
  // One entry per scope: the first field that needs it names it.
  const seen = new Set<string>();
  return needs.filter((need) => (seen.has(need.scope) ? false : (seen.add(need.scope), true)));
}

/** The scopes the policy needs of its author. */
export function policyNeeds(policy: PolicyShape): string[] {
  return policyNeedsByField(policy).map((need) => need.scope);
}

/** The needs `granted` does not cover. */
export function unmetNeeds(granted: readonly string[], needs: readonly PolicyNeed[]): PolicyNeed[] {
  return needs.filter((need) => !hasScope(granted, need.scope));
}
