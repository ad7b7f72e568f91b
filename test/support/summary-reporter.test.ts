/** The summary line counts every test, and in CI a skipped test fails the run (issue 9 §6). */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { TestModule } from 'vitest/node';
import { countTests, summaryLine } from './summary-reporter.js';

const ROOT = join(import.meta.dirname, '..', '..');
const FIXTURE = join(ROOT, 'test', 'fixtures', 'skip-reporter');

type State = 'passed' | 'failed' | 'skipped' | 'pending';

/** Just the parts of vitest's TestModule/TestCase that the reporter reads. */
function fakeModule(state: State, tests: Array<{ state: State; suiteState?: State }>): TestModule {
  const module = { type: 'module', state: () => state };
  const cases = tests.map((t) => ({
    result: () => ({ state: t.state }),
    parent: t.suiteState === undefined ? module : { type: 'suite', state: () => t.suiteState, parent: module },
  }));
  return { ...module, children: { allTests: () => cases[Symbol.iterator]() } } as unknown as TestModule;
}

describe('countTests', () => {
  it('counts passed, failed and skipped tests, a test whose suite setup failed as failed, and a file that failed to load', () => {
    const counts = countTests([
      fakeModule('passed', [{ state: 'passed' }, { state: 'passed' }, { state: 'skipped' }]),
      fakeModule('failed', [{ state: 'failed' }, { state: 'skipped', suiteState: 'failed' }]),
      fakeModule('failed', []),
      fakeModule('passed', [{ state: 'skipped', suiteState: 'passed' }]),
    ]);
    expect(counts).toEqual({ passed: 2, failed: 3, skipped: 2 });
    expect(summaryLine(counts)).toBe('2 passed, 3 failed, 2 skipped');
    expect(summaryLine({ passed: 4, failed: 0, skipped: 0 })).toBe('4 passed, 0 failed');
  });
});

function runFixture(ci: boolean): Promise<{ code: number | null; stdout: string }> {
  const env: NodeJS.ProcessEnv = {};
  // A clean environment: the inner run must not think it is a worker of this one.
  for (const [name, value] of Object.entries(process.env)) if (!/^(VITEST|CI$|TEST$|NODE_ENV$)/.test(name)) env[name] = value;
  if (ci) env.CI = 'true';
  env.VITE_CONFIG_NATIVE_IGNORE_WARNING = 'true';
  const child = spawn(process.execPath, [join(ROOT, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--config', 'vitest.config.ts'], {
    cwd: FIXTURE,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.resume();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout });
    });
  });
}

describe('a run with a skipped test', { timeout: 90_000 }, () => {
  it('fails in CI, saying how many were skipped', async () => {
    const run = await runFixture(true);
    expect(run.stdout).toMatch(/^1 passed, 0 failed, 1 skipped$/m);
    expect(run.stdout).toMatch(/^FAIL: 1 test\(s\) skipped; CI runs every test/m);
    expect(run.code).toBe(1);
  });

  it('passes outside CI, still counting the skip', async () => {
    const run = await runFixture(false);
    expect(run.stdout).toMatch(/^1 passed, 0 failed, 1 skipped$/m);
    expect(run.stdout).not.toMatch(/FAIL:/);
    expect(run.code).toBe(0);
  });
});
