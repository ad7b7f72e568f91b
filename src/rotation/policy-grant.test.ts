import { describe, expect, it } from 'vitest';
import { policyNeeds, policyNeedsByField, policyReads, targetNeeds, unmetNeeds } from './policy-grant.js';
import type { RotationPolicy } from './policy.js';

type Shape = Pick<RotationPolicy, 'target' | 'connector'>;

const httpPolicy: Shape = {
  target: { secret: 'vendors/acme/api-key' },
  connector: { type: 'http', settings: { adminSecret: 'vendors/acme/admin', create: { url: 'https://api.acme.test/keys', headers: { X: 'admin/x' } } } },
};

describe('policyNeeds', () => {
  it('an http policy needs read and write on its target, read on adminSecret, and rotation:run', () => {
    expect(policyNeeds(httpPolicy)).toEqual(['rotation:run', 'secrets:read:vendors/acme/api-key', 'secrets:write:vendors/acme/api-key', 'secrets:read:vendors/acme/admin']);
    expect(policyNeedsByField(httpPolicy).find((need) => need.scope === 'secrets:read:vendors/acme/admin')?.field).toBe('connector.settings.adminSecret');
  });

  it('a postgres policy needs read on its adminSecret', () => {
    expect(policyNeeds({ target: { secret: 'db/orders/app' }, connector: { type: 'postgres', settings: { adminSecret: 'db/orders/admin', roles: ['a', 'b'] } } })).toContain('secrets:read:db/orders/admin');
  });

  it('a command policy needs read on every path it hands the program', () => {
    const policy: Shape = { target: { secret: 'apps/x' }, connector: { type: 'command', settings: { command: '/bin/true', secrets: { loot: 'admin/x', db: 'db/pw' } } } };
    expect(policyNeedsByField(policy)).toEqual(
      expect.arrayContaining([
        { scope: 'secrets:read:admin/x', field: 'connector.settings.secrets.loot' },
        { scope: 'secrets:read:db/pw', field: 'connector.settings.secrets.db' },
      ]),
    );
  });

  it('a keys target needs keys:rotate, and write on deliverTo', () => {
    expect(policyNeeds({ target: { key: 'key_0123456789012345678901' }, connector: { type: 'keysmith-key', settings: {} } })).toEqual(['rotation:run', 'keys:rotate']);
    const byOwner: Shape = { target: { keys: { owner: 'team' } }, connector: { type: 'keysmith-key', settings: { deliverTo: 'apps/checkout/api-key' } } };
    expect(policyNeedsByField(byOwner)).toEqual([
      { scope: 'rotation:run', field: 'schedule' },
      { scope: 'keys:rotate', field: 'target.keys' },
      { scope: 'secrets:write:apps/checkout/api-key', field: 'connector.settings.deliverTo' },
    ]);
  });

  it('names each scope once', () => {
    const policy: Shape = { target: { secret: 'a/b' }, connector: { type: 'command', settings: { command: 'x', secrets: { one: 'a/b', two: 'a/b' } } } };
    expect(policyNeeds(policy)).toEqual(['rotation:run', 'secrets:read:a/b', 'secrets:write:a/b']);
  });

  it('reads only the fields that name vault paths, never other strings in the settings', () => {
    expect(policyReads(httpPolicy)).toEqual([{ path: 'vendors/acme/admin', field: 'connector.settings.adminSecret' }]);
    // adminSecret means nothing to a command connector: it is not a path it may read.
    expect(policyReads({ target: { secret: 'a' }, connector: { type: 'command', settings: { adminSecret: 'admin/x' } } })).toEqual([]);
  });
});

describe('unmetNeeds', () => {
  it('judges with the scope rules: wildcards and path prefixes cover', () => {
    const needs = policyNeedsByField(httpPolicy);
    expect(unmetNeeds(['*'], needs)).toEqual([]);
    expect(unmetNeeds(['rotation:*', 'secrets:read:vendors/*', 'secrets:write:vendors/acme/api-key'], needs)).toEqual([]);
    expect(unmetNeeds(['rotation:write', 'rotation:run', 'secrets:read:vendors/acme/api-key', 'secrets:write:vendors/acme/api-key'], needs)).toEqual([
      { scope: 'secrets:read:vendors/acme/admin', field: 'connector.settings.adminSecret' },
    ]);
  });

  it('a trigger needs to change the target only', () => {
    expect(targetNeeds(httpPolicy)).toEqual([{ scope: 'secrets:write:vendors/acme/api-key', field: 'target.secret' }]);
    expect(unmetNeeds(['rotation:run'], targetNeeds({ target: { key: 'key_x' } }))).toEqual([{ scope: 'keys:rotate', field: 'target.key' }]);
  });
});
