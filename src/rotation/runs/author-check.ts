/**
 * A stored policy runs as its author: before a run of it calls any connector, the author's token
 * is read as it is now and must still hold every scope the policy needs. A revoked, expired or
 * disabled author, or one whose scopes were narrowed, stops the run. A token rotated since
 * (superseded) stands for its successor: rotating a token does not orphan its policies.
 */
import type { KeyRecord, KeyService } from '../../keys/index.js';
import { isAppError } from '../../shared/errors.js';
import { policyNeedsByField, unmetNeeds } from '../policy-grant.js';
import type { RotationPolicy } from '../policy.js';

/** How many rotations of the author's token are followed to its current successor. */
const MAX_SUCCESSORS = 16;

/** Why the author can no longer run the policy, as the run's error; undefined when it can. */
export async function authorDenial(keys: Pick<KeyService, 'get'>, author: string, policy: RotationPolicy): Promise<string | undefined> {
  const needs = policyNeedsByField(policy);
  const first = needs[0]?.scope ?? 'rotation:run';
  let record: KeyRecord | undefined = await tokenOf(keys, author);
  for (let hop = 0; record?.status === 'superseded' && record.replacedBy !== null && hop < MAX_SUCCESSORS; hop += 1) {
    record = await tokenOf(keys, record.replacedBy);
  }
  if (record === undefined) return `the policy's author ${author} no longer holds ${first}: no such token`;
  if (record.status !== 'active') return `the policy's author ${author} no longer holds ${first}: its token is ${record.status}`;
  const unmet = unmetNeeds(record.scopes, needs);
  if (unmet.length > 0) return `the policy's author ${author} no longer holds ${unmet.map((need) => need.scope).join(', ')}`;
  return undefined;
}

async function tokenOf(keys: Pick<KeyService, 'get'>, id: string): Promise<KeyRecord | undefined> {
  try {
    return await keys.get(id, 'management');
  } catch (error) {
    if (isAppError(error) && error.code === 'ERR_KEY_NOT_FOUND') return undefined;
    throw error;
  }
}
