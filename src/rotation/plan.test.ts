import { describe, expect, it } from 'vitest';
import { normalisePolicy, type RotationPolicy } from './policy.js';
import { changedFields, planPolicies } from './plan.js';

function policy(name: string, extra: Partial<RotationPolicy> = {}): RotationPolicy {
  return normalisePolicy({
    name,
    target: { secret: `apps/${name}` },
    schedule: { every: '30d' },
    overlap: '1d',
    connector: { type: 'http', settings: { url: 'https://rotate.internal' } },
    ...extra,
  });
}

describe('planPolicies', () => {
  it('sorts policies into create, update (with the changed fields), delete and unchanged', () => {
    const current = [policy('same'), policy('changed'), policy('gone')];
    const desired = [
      policy('same'),
      policy('changed', { schedule: { every: '60d' }, connector: { type: 'http', settings: { url: 'https://other.internal' } } }),
      policy('new'),
    ];
    const plan = planPolicies(desired, current);
    expect(plan.create.map((p) => p.name)).toEqual(['new']);
    expect(plan.update).toEqual([{ name: 'changed', changes: ['connector.settings.url', 'schedule.every'], policy: desired[1] }]);
    expect(plan.delete).toEqual(['gone']);
    expect(plan.unchanged).toEqual(['same']);
  });

  it('treats a default written out and a default left out as the same', () => {
    const written = policy('p', { enabled: true, onFailure: 'rollback', healthChecks: [{ url: 'https://h', expect: '2xx', consecutive: 3, within: '5m' }] });
    const implicit = normalisePolicy({ ...policy('p'), healthChecks: [{ url: 'https://h' }] } as never);
    expect(planPolicies([implicit], [written]).unchanged).toEqual(['p']);
  });

  it('notices a field added or removed, and a switch between schedule kinds', () => {
    const before = policy('p');
    const after = policy('p', { description: 'now described', schedule: { cron: '0 3 * * *', window: '1h' } });
    expect(planPolicies([after], [before]).update[0]?.changes).toEqual(['description', 'schedule.cron', 'schedule.every', 'schedule.window']);
  });

  it('plans nothing to do for two empty lists, and deletes everything for an empty file', () => {
    expect(planPolicies([], [])).toEqual({ create: [], update: [], delete: [], unchanged: [] });
    expect(planPolicies([], [policy('b'), policy('a')]).delete).toEqual(['a', 'b']);
  });
});

describe('changedFields', () => {
  it('compares deeply, by index in lists of equal length and as a whole otherwise', () => {
    expect(changedFields({ a: [1, { b: 2 }] }, { a: [1, { b: 3 }] })).toEqual(['a.1.b']);
    expect(changedFields({ a: [1] }, { a: [1, 2] })).toEqual(['a']);
    expect(changedFields({ a: { x: 1, y: 2 } }, { a: { y: 2, x: 1 } })).toEqual([]);
    expect(changedFields({ a: null }, { a: {} })).toEqual(['a']);
  });
});
