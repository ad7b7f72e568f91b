/**
 * Progress of long work on a terminal: a one-line bar redrawn in place on stderr, and a poller
 * that watches work the server does in the background (KEK re-wrap, mass rotation, scans).
 * Off a terminal nothing is drawn, so pipes and `--json` stay clean.
 */
import { setTimeout as delay } from 'node:timers/promises';

export type ProgressStream = NodeJS.WritableStream & { isTTY?: boolean };

const BAR_WIDTH = 30;

/** `label [#####.....] 5/10 50%`; a total of 0 counts as complete. */
export function renderBar(label: string, done: number, total: number, width = BAR_WIDTH): string {
  const ratio = total <= 0 ? 1 : Math.min(1, Math.max(0, done / total));
  const filled = Math.round(ratio * width);
  return `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${Math.floor(ratio * 100)}%`;
}

export interface ProgressBar {
  /** Redraws the bar; the line is ended once done reaches total. */
  update(done: number, total: number): void;
  /** Ends the line if the bar is still open (work stopped early). */
  finish(): void;
}

/** A bar on `stream` if it is a terminal (and `enabled`); one that draws nothing otherwise. */
export function progressBar(stream: ProgressStream, label: string, enabled = true): ProgressBar {
  if (!enabled || !stream.isTTY) return { update: () => undefined, finish: () => undefined };
  let open = false;
  return {
    update(done, total) {
      // \x1b[K clears what a longer previous line left behind.
      stream.write(`\r${renderBar(label, done, total)}\x1b[K`);
      open = done < total;
      if (!open) stream.write('\n');
    },
    finish() {
      if (open) stream.write('\n');
      open = false;
    },
  };
}

/** The callback form, for work that reports its own progress (`onProgress(done, total)`). */
export function progress(stream: ProgressStream, label: string): (done: number, total: number) => void {
  const bar = progressBar(stream, label);
  return (done, total) => bar.update(done, total);
}

export interface PollOptions<T> {
  /** One look at the work, e.g. GET /v1/kek. */
  read(): Promise<T>;
  finished(value: T): boolean;
  /** Called with every value read, the last one included. */
  onValue?(value: T): void;
  /** Between reads; 500 ms unless given. */
  intervalMs?: number;
  /** Stops the watch (not the work) when it resolves. */
  stopSignal?: Promise<unknown>;
  /** Injected by tests; resolves after `ms` or as soon as `signal` aborts. */
  sleep?(ms: number, signal: AbortSignal): Promise<void>;
}

export interface PollResult<T> {
  /** The last value read. */
  readonly value: T;
  /** Whether the watch ended on the stop signal rather than on `finished`. */
  readonly stopped: boolean;
}

const sleepFor = (ms: number, signal: AbortSignal): Promise<void> => delay(ms, undefined, { signal }).catch(() => undefined);

/** Reads until `finished` or the stop signal, waiting `intervalMs` between reads. */
export async function pollUntil<T>(options: PollOptions<T>): Promise<PollResult<T>> {
  const interval = options.intervalMs ?? 500;
  const sleep = options.sleep ?? sleepFor;
  const abort = new AbortController();
  let stopped = false;
  void options.stopSignal?.then(() => {
    stopped = true;
    abort.abort();
  });
  try {
    for (;;) {
      const value = await options.read();
      options.onValue?.(value);
      if (options.finished(value)) return { value, stopped: false };
      // Let a stop signal that has already resolved land before deciding to wait.
      await Promise.resolve();
      if (stopped) return { value, stopped: true };
      await sleep(interval, abort.signal);
      if (stopped) return { value, stopped: true };
    }
  } finally {
    abort.abort();
  }
}

export interface WatchOptions<T> extends PollOptions<T> {
  readonly stream: ProgressStream;
  readonly label: string;
  /** Whether to draw at all (false under --json). */
  readonly draw: boolean;
  measure(value: T): { done: number; total: number };
}

/** `pollUntil` with a bar drawn from each value; the bar's line is closed however the watch ends. */
export async function watchProgress<T>(options: WatchOptions<T>): Promise<PollResult<T>> {
  const bar = progressBar(options.stream, options.label, options.draw);
  try {
    return await pollUntil({
      ...options,
      onValue(value) {
        const { done, total } = options.measure(value);
        bar.update(done, total);
        options.onValue?.(value);
      },
    });
  } finally {
    bar.finish();
  }
}
