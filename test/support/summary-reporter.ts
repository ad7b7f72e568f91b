/**
 * Ends the output with one line: `N passed, N failed[, N skipped]`. A test that never ran because
 * its suite's setup failed counts as failed, not skipped; so does a file that failed to load.
 * In CI (CI=true) a skipped test fails the run: the PostgreSQL and PKCS#11 suites skip only on a
 * machine without them, and CI has both, so a skip there means a test that silently did not run.
 */
import type { Reporter, TestCase, TestModule } from 'vitest/node';

export interface TestCounts {
  readonly passed: number;
  readonly failed: number;
  readonly skipped: number;
}

function setupFailed(test: TestCase): boolean {
  let parent: TestCase['parent'] | undefined = test.parent;
  while (parent) {
    if (parent.state() === 'failed') return true;
    parent = parent.type === 'module' ? undefined : parent.parent;
  }
  return false;
}

/** Counts every test of a run; skipped covers `.skip`, `.todo`, `skipIf` and filtered-out tests alike. */
export function countTests(testModules: ReadonlyArray<TestModule>): TestCounts {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const module of testModules) {
    const tests = [...module.children.allTests()];
    if (tests.length === 0 && module.state() === 'failed') failed += 1;
    for (const test of tests) {
      const state = test.result().state;
      if (state === 'passed') passed += 1;
      else if (state === 'failed' || setupFailed(test)) failed += 1;
      else skipped += 1;
    }
  }
  return { passed, failed, skipped };
}

/** The summary line `.ci/run` reads back. */
export function summaryLine(counts: TestCounts): string {
  return `${counts.passed} passed, ${counts.failed} failed${counts.skipped > 0 ? `, ${counts.skipped} skipped` : ''}`;
}

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const counts = countTests(testModules);
    process.stdout.write(`\n${summaryLine(counts)}\n`);
    if (process.env.CI === 'true' && counts.skipped > 0) {
      process.stdout.write(`FAIL: ${counts.skipped} test(s) skipped; CI runs every test, so none may skip\n`);
      process.exitCode = 1;
    }
  }
}
