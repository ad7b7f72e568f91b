import { describe, expect, it } from 'vitest';
import { pollUntil, progressBar, renderBar, watchProgress, type ProgressStream } from './progress.js';

function fakeStream(isTTY: boolean): ProgressStream & { output: string } {
  const stream = {
    isTTY,
    output: '',
    write(chunk: string | Uint8Array) {
      stream.output += String(chunk);
      return true;
    },
  };
  return stream as unknown as ProgressStream & { output: string };
}

/** A sleep that returns at once, counting the waits asked for. */
function instantSleep(waits: number[]) {
  return async (ms: number) => {
    waits.push(ms);
  };
}

describe('renderBar', () => {
  it('fills in proportion to done/total and shows counts and percent', () => {
    expect(renderBar('Re-wrapping', 0, 4, 8)).toBe('Re-wrapping [........] 0/4 0%');
    expect(renderBar('Re-wrapping', 1, 4, 8)).toBe('Re-wrapping [##......] 1/4 25%');
    expect(renderBar('Re-wrapping', 4, 4, 8)).toBe('Re-wrapping [########] 4/4 100%');
  });

  it('counts nothing to do as complete and never overflows', () => {
    expect(renderBar('x', 0, 0, 4)).toBe('x [####] 0/0 100%');
    expect(renderBar('x', 7, 5, 4)).toBe('x [####] 7/5 100%');
    expect(renderBar('x', -1, 5, 4)).toBe('x [....] -1/5 0%');
  });
});

describe('progressBar', () => {
  it('draws nothing when the stream is not a terminal', () => {
    const stream = fakeStream(false);
    const bar = progressBar(stream, 'Work');
    bar.update(1, 2);
    bar.finish();
    expect(stream.output).toBe('');
  });

  it('draws nothing when disabled, even on a terminal', () => {
    const stream = fakeStream(true);
    progressBar(stream, 'Work', false).update(1, 2);
    expect(stream.output).toBe('');
  });

  it('redraws in place and ends the line once, when done reaches total', () => {
    const stream = fakeStream(true);
    const bar = progressBar(stream, 'Work');
    bar.update(1, 2);
    bar.update(2, 2);
    bar.finish();
    expect(stream.output.startsWith('\r')).toBe(true);
    expect(stream.output.match(/\r/g)).toHaveLength(2);
    expect(stream.output.match(/\n/g)).toHaveLength(1);
    expect(stream.output.endsWith('2/2 100%\x1b[K\n')).toBe(true);
  });

  it('ends an open line when the work stops early', () => {
    const stream = fakeStream(true);
    const bar = progressBar(stream, 'Work');
    bar.update(1, 3);
    bar.finish();
    bar.finish();
    expect(stream.output.endsWith('1/3 33%\x1b[K\n')).toBe(true);
    expect(stream.output.match(/\n/g)).toHaveLength(1);
  });
});

describe('pollUntil', () => {
  it('reads until finished, waiting the interval between reads but not after the last', async () => {
    const values = [3, 2, 0];
    const waits: number[] = [];
    const seen: number[] = [];
    const result = await pollUntil({
      read: async () => values.shift()!,
      finished: (remaining) => remaining === 0,
      onValue: (value) => seen.push(value),
      intervalMs: 500,
      sleep: instantSleep(waits),
    });
    expect(result).toEqual({ value: 0, stopped: false });
    expect(seen).toEqual([3, 2, 0]);
    expect(waits).toEqual([500, 500]);
  });

  it('stops on the stop signal with the last value read', async () => {
    let reads = 0;
    let stop!: (signal: string) => void;
    const stopSignal = new Promise<string>((resolve) => (stop = resolve));
    const result = await pollUntil({
      read: async () => {
        reads += 1;
        if (reads === 2) stop('SIGINT');
        return reads;
      },
      finished: () => false,
      stopSignal,
      sleep: async () => undefined,
    });
    expect(result).toEqual({ value: 2, stopped: true });
    expect(reads).toBe(2);
  });

  it('wakes from its wait as soon as the stop signal arrives', async () => {
    let stop!: (signal: string) => void;
    const stopSignal = new Promise<string>((resolve) => (stop = resolve));
    const started = Date.now();
    setTimeout(() => stop('SIGTERM'), 20);
    const result = await pollUntil({ read: async () => 'running', finished: () => false, stopSignal, intervalMs: 60_000 });
    expect(result).toEqual({ value: 'running', stopped: true });
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('passes on a failed read', async () => {
    await expect(pollUntil({ read: async () => Promise.reject(new Error('gone')), finished: () => false })).rejects.toThrow('gone');
  });
});

describe('watchProgress', () => {
  it('draws each value read and closes the line when the work is done', async () => {
    const stream = fakeStream(true);
    const statuses = [{ remaining: 4 }, { remaining: 1 }, { remaining: 0 }];
    const result = await watchProgress({
      stream,
      label: 'Re-wrapping data keys',
      draw: true,
      read: async () => statuses.shift()!,
      finished: (status) => status.remaining === 0,
      measure: (status) => ({ done: 4 - status.remaining, total: 4 }),
      sleep: async () => undefined,
    });
    expect(result.value).toEqual({ remaining: 0 });
    expect(stream.output).toContain('0/4 0%');
    expect(stream.output).toContain('3/4 75%');
    expect(stream.output.endsWith('4/4 100%\x1b[K\n')).toBe(true);
  });

  it('draws nothing when told not to (--json)', async () => {
    const stream = fakeStream(true);
    await watchProgress({
      stream,
      label: 'x',
      draw: false,
      read: async () => 0,
      finished: () => true,
      measure: () => ({ done: 0, total: 1 }),
    });
    expect(stream.output).toBe('');
  });
});
