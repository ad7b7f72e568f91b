/** Background chores (flushes, polls, sweeps) on a timer that never keeps the process alive. */

/**
 * Runs `task` every `intervalMs`; a failed run is left for the next one to retry. Returns the
 * function that stops it.
 */
export function repeatEvery(intervalMs: number, task: () => Promise<unknown>): () => void {
  const timer = setInterval(() => {
    task().catch(() => undefined);
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
