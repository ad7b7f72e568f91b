/**
 * Waiting on a condition instead of sleeping: a test that needs "after X has happened" polls
 * for X, so a slow machine makes it slower, never wrong. The poll interval decides nothing.
 */
export async function waitUntil(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
