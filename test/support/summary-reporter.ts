/**
 * Ends the output with one line: `N passed, N failed`. A test that never ran because its
 * suite's setup failed counts as failed, not skipped; so does a file that failed to load.
 */
import type { Reporter, TestCase, TestModule } from 'vitest/node';

function setupFailed(test: TestCase): boolean {
  let parent: TestCase['parent'] | undefined = test.parent;
  while (parent) {
    if (parent.state() === 'failed') return true;
    parent = parent.type === 'module' ? undefined : parent.parent;
  }
  return false;
}

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
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
    process.stdout.write(`\n${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}\n`);
  }
}
