import { describe, expect, it } from 'vitest';
import { createPolicyValidator, type PolicyProblem } from './policy.js';

const DAY = 86_400_000;
const validator = createPolicyValidator({ maxOverlapMs: 90 * DAY });

const keyPolicy = {
  name: 'payments-keys',
  target: { keys: { owner: 'team-payments' } },
  schedule: { every: '30d' },
  overlap: '24h',
  connector: { type: 'keysmith-key' },
};
const secretPolicy = {
  name: 'stripe',
  target: { secret: 'payments/stripe/api-key' },
  schedule: { cron: '0 3 * * 1', window: '2h' },
  overlap: '2d',
  connector: { type: 'http', settings: { url: 'https://rotate.internal/stripe', tokenPath: 'ops/rotator-token' } },
};

function problemsOf(input: unknown): PolicyProblem[] {
  const result = validator.check(input);
  expect(result.ok).toBe(false);
  return result.ok ? [] : result.problems;
}

describe('rotation policy validator', () => {
  it('accepts a key policy and a secret policy and fills in the defaults', () => {
    const result = validator.check({ ...keyPolicy, healthChecks: [{ url: 'https://api.example.com/health' }] });
    expect(result).toEqual({
      ok: true,
      policy: {
        ...keyPolicy,
        healthChecks: [{ url: 'https://api.example.com/health', expect: '2xx', consecutive: 3, within: '5m' }],
        onOverlapEnd: 'keep',
        onFailure: 'rollback',
        enabled: true,
      },
    });
    expect(validator.check(secretPolicy).ok).toBe(true);
  });

  it('refuses a schedule under one hour, with every or with cron', () => {
    expect(problemsOf({ ...keyPolicy, schedule: { every: '30m' } })).toEqual([{ path: ['schedule', 'every'], message: expect.stringContaining('too frequent') }]);
    expect(problemsOf({ ...secretPolicy, schedule: { cron: '*/5 * * * *', window: '1m' } })).toEqual([
      { path: ['schedule', 'cron'], message: expect.stringContaining('5m apart') },
    ]);
    expect(validator.check({ ...keyPolicy, schedule: { every: '1h' }, overlap: '30m' }).ok).toBe(true);
  });

  it('refuses an overlap longer than the key class allows, or as long as the interval', () => {
    expect(problemsOf({ ...keyPolicy, schedule: { every: '365d' }, overlap: '91d' })).toEqual([{ path: ['overlap'], message: expect.stringContaining('longer than the key class allows (90d)') }]);
    expect(problemsOf({ ...keyPolicy, overlap: '30d' })).toEqual([{ path: ['overlap'], message: expect.stringContaining('shorter than the schedule interval (30d)') }]);
    expect(problemsOf({ ...secretPolicy, overlap: '7d' })[0]?.path).toEqual(['overlap']);
  });

  it('pairs keysmith-key with key targets and the other connectors with secrets', () => {
    expect(problemsOf({ ...keyPolicy, connector: { type: 'http' } })).toEqual([{ path: ['connector', 'type'], message: expect.stringContaining('needs keysmith-key') }]);
    expect(problemsOf({ ...secretPolicy, connector: { type: 'keysmith-key' } })).toEqual([
      { path: ['connector', 'type'], message: expect.stringContaining('http, postgres, command') },
    ]);
  });

  it('names the allowed connectors when the type is unknown', () => {
    expect(problemsOf({ ...secretPolicy, connector: { type: 'ftp' } })).toEqual([
      { path: ['connector', 'type'], message: 'unknown connector type; use one of keysmith-key, http, postgres, command' },
    ]);
  });

  it('wants exactly one target and exactly one schedule, and a selector for keys', () => {
    expect(problemsOf({ ...keyPolicy, target: { key: 'key_0123456789abcdefghijKL', secret: 'a/b' } })[0]).toEqual({ path: ['target'], message: expect.stringContaining('got key and secret') });
    expect(problemsOf({ ...keyPolicy, target: {} })[0]?.path).toEqual(['target']);
    expect(problemsOf({ ...keyPolicy, target: { keys: {} } })).toEqual([{ path: ['target', 'keys'], message: expect.stringContaining('an owner or at least one label') }]);
    expect(problemsOf({ ...keyPolicy, schedule: { every: '30d', cron: '0 3 * * *' } })[0]?.path).toEqual(['schedule']);
    expect(problemsOf({ ...secretPolicy, schedule: { cron: '0 3 * * 1' } })[0]?.message).toContain('needs a window');
  });

  it('refuses unknown fields, malformed names, ids, paths, durations and URLs, naming each field', () => {
    expect(problemsOf({ ...keyPolicy, overlpa: '1d' })).toEqual([{ path: ['overlpa'], message: 'unknown field "overlpa" in policy' }]);
    expect(problemsOf({ ...keyPolicy, name: 'Payments' })[0]?.path).toEqual(['name']);
    expect(problemsOf({ ...keyPolicy, target: { key: 'key_short' } })[0]?.path).toEqual(['target', 'key']);
    expect(problemsOf({ ...secretPolicy, target: { secret: '../etc' } })[0]?.path).toEqual(['target', 'secret']);
    expect(problemsOf({ ...keyPolicy, overlap: '1w' })[0]?.path).toEqual(['overlap']);
    expect(problemsOf({ ...keyPolicy, healthChecks: [{ url: 'file:///etc/passwd' }] })[0]?.path).toEqual(['healthChecks', 0, 'url']);
    const { overlap: _omitted, ...noOverlap } = keyPolicy;
    expect(problemsOf(noOverlap)).toEqual([{ path: [], message: 'policy needs the field "overlap"' }]);
  });

  it('allows maxExtension only with onOverlapEnd: extend, and within the key class', () => {
    expect(problemsOf({ ...keyPolicy, maxExtension: '2d' })[0]?.path).toEqual(['maxExtension']);
    expect(validator.check({ ...keyPolicy, onOverlapEnd: 'extend', maxExtension: '2d' }).ok).toBe(true);
    expect(problemsOf({ ...keyPolicy, schedule: { every: '365d' }, overlap: '80d', onOverlapEnd: 'extend', maxExtension: '20d' })[0]?.path).toEqual(['maxExtension']);
  });

  it('refuses a name used twice in one list, pointing at the second', () => {
    const result = validator.checkAll([keyPolicy, secretPolicy, { ...secretPolicy }]);
    expect(result.policies.map((policy) => policy.name)).toEqual(['payments-keys', 'stripe']);
    expect(result.problems).toEqual([{ path: [2, 'name'], message: 'policy name "stripe" is already used by policy 2' }]);
  });
  it('wants a quiet period of at least two minutes, and only for issued keys', () => {
    expect(validator.check({ ...keyPolicy, quietPeriod: '2m' }).ok).toBe(true);
    expect(problemsOf({ ...keyPolicy, quietPeriod: '90s' })).toEqual([{ path: ['quietPeriod'], message: expect.stringContaining('at least 2m') }]);
    expect(problemsOf({ ...secretPolicy, quietPeriod: '10m' })).toEqual([{ path: ['quietPeriod'], message: expect.stringContaining('applies to issued keys') }]);
  });

  it('wants exactly one of url or program in a deploy hook, and no command line', () => {
    expect(validator.check({ ...secretPolicy, deployHook: { url: 'https://deploy.internal/hook', timeout: '30s' } }).ok).toBe(true);
    expect(validator.check({ ...secretPolicy, deployHook: { program: 'refresh', args: ['--all'] } }).ok).toBe(true);
    const hookNeeds = 'deployHook needs exactly one of url or program (a program registered in the server configuration)';
    expect(problemsOf({ ...secretPolicy, deployHook: {} })).toEqual([{ path: ['deployHook'], message: hookNeeds }]);
    expect(problemsOf({ ...secretPolicy, deployHook: { command: ['/bin/sh', '-c', 'id'] } })).toEqual([{ path: ['deployHook', 'command'], message: 'unknown field "command" in deployHook' }]);
    expect(problemsOf({ ...secretPolicy, deployHook: { url: 'https://x.example', args: ['x'] } })).toEqual([{ path: ['deployHook', 'args'], message: 'deployHook.args goes with program' }]);
    expect(problemsOf({ ...secretPolicy, deployHook: { url: 'ftp://x' } })).toEqual([{ path: ['deployHook', 'url'], message: 'deployHook.url must be an http or https URL' }]);
    expect(problemsOf({ ...secretPolicy, deployHook: { url: 'https://x.example', timeout: 'soon' } })).toEqual([
      { path: ['deployHook', 'timeout'], message: expect.stringContaining('positive duration') },
    ]);
  });
});
