import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parsePolicyFile, type FileProblem } from './policy-file.js';
import { connectorSettingsCheck } from './setup.js';

const limits = { maxOverlapMs: 90 * 86_400_000 };

/** The example in the docs: two policies, one per kind of target. */
const GOOD = readFileSync(new URL('../../docs/rotation.example.yaml', import.meta.url), 'utf8');

/** GOOD with one line replaced. */
function withLine(search: string, replacement: string): string {
  expect(GOOD).toContain(search);
  return GOOD.replace(search, replacement);
}

function problemsOf(text: string): FileProblem[] {
  const result = parsePolicyFile(text, limits);
  expect(result.ok).toBe(false);
  return result.ok ? [] : result.problems;
}

describe('policy files', () => {
  it('reads every policy of a good file, defaults filled in', () => {
    const result = parsePolicyFile(GOOD, limits);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.policies.map((policy) => policy.name)).toEqual(['payments-keys', 'stripe']);
    expect(result.policies[0]).toMatchObject({
      target: { keys: { owner: 'team-payments', labels: { tier: 'gold' } } },
      healthChecks: [{ url: 'https://api.example.com/health', expect: '2xx', consecutive: 5, within: '5m' }],
      onOverlapEnd: 'revoke',
      onFailure: 'rollback',
      enabled: true,
    });
    expect(result.policies[1]?.connector).toMatchObject({ type: 'http', settings: { adminSecret: 'payments/stripe/admin', create: { key: '$.secret', id: '$.id' } } });
    expect(result.policies[1]?.deployHook).toEqual({ url: 'https://deploy.internal/hooks/refresh-payments' });
  });

  it('names the line of an unknown connector and the connectors there are', () => {
    expect(problemsOf(withLine('type: http', 'type: ftp'))).toEqual([
      { line: 27, column: 7, message: 'unknown connector type; use one of keysmith-key, http, postgres, command' },
    ]);
  });

  it('names the line of a schedule under an hour', () => {
    expect(problemsOf(withLine('every: 30d', 'every: 30m'))).toEqual([{ line: 10, column: 7, message: expect.stringContaining('every 30m is too frequent') }]);
  });

  it('names the line of a cron that fires every 5 minutes', () => {
    expect(problemsOf(withLine('cron: "0 3 * * 1"', 'cron: "*/5 * * * *"'))).toEqual([{ line: 23, column: 7, message: expect.stringContaining('5m apart') }]);
  });

  it('names the line of an overlap longer than the key class allows', () => {
    const text = withLine('every: 30d', 'every: 365d').replace('overlap: 24h', 'overlap: 120d');
    expect(problemsOf(text)).toEqual([{ line: 11, column: 5, message: expect.stringContaining('longer than the key class allows (90d)') }]);
  });

  it('names the line of the second use of a name', () => {
    expect(problemsOf(withLine('- name: stripe', '- name: payments-keys'))).toEqual([
      { line: 19, column: 5, message: 'policy name "payments-keys" is already used by policy 1' },
    ]);
  });

  it('names the line of an unknown field, at any depth and at the top', () => {
    expect(problemsOf(withLine('        consecutive: 5', '        consecutive: 5\n        retries: 2'))).toEqual([
      { line: 17, column: 9, message: 'unknown field "retries" in healthChecks.0' },
    ]);
    expect(problemsOf(`${GOOD}version: 2\n`)).toEqual([{ line: GOOD.split('\n').length, column: 1, message: expect.stringContaining('unknown top-level field "version"') }]);
  });

  it('names the line of a YAML syntax error and of a key given twice', () => {
    const [syntax] = problemsOf(withLine('    overlap: 2d', '    overlap: [2d'));
    expect(syntax?.line).toBeGreaterThanOrEqual(25);
    const [duplicate] = problemsOf(withLine('    overlap: 2d', '    overlap: 2d\n    overlap: 3d'));
    expect(duplicate).toEqual({ line: 26, column: 5, message: expect.stringMatching(/unique/) });
  });

  it('names the line of a connector that cannot rotate the target', () => {
    expect(problemsOf(withLine('type: keysmith-key', 'type: postgres'))).toEqual([{ line: 13, column: 7, message: expect.stringContaining('needs keysmith-key') }]);
  });

  it('names the line of connector settings the connector does not accept, with the settings check', () => {
    const text = withLine('        adminSecret: payments/stripe/admin', '        adminSecret: payments/stripe/admin\n        retries: 3');
    expect(parsePolicyFile(text, limits).ok).toBe(true);
    const checked = parsePolicyFile(text, limits, connectorSettingsCheck());
    expect(checked.ok).toBe(false);
    expect(checked.ok ? [] : checked.problems).toEqual([{ line: 28, column: 7, message: 'retries is not an http connector setting' }]);
    expect(parsePolicyFile(GOOD, limits, connectorSettingsCheck()).ok).toBe(true);
  });

  it('refuses a file that is not a map with a policies list', () => {
    expect(problemsOf('- name: a\n')[0]?.message).toContain('"policies" list');
    expect(problemsOf('policies: nope\n')).toEqual([{ line: 1, column: 11, message: '"policies" must be a list of policies' }]);
    expect(problemsOf('policies:\n  - 42\n')).toEqual([{ line: 2, column: 5, message: 'policy must be object' }]);
  });
});
