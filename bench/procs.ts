/**
 * Child processes for the bench: spawn (optionally pinned to one CPU with taskset), wait for
 * a JSON "listening" line, and always stop them — on success, on error and on SIGINT/SIGTERM.
 * Each child leads its own process group, so stopping it also stops what it started (the
 * load generator's wrk); signals go to that group by its id, never by name.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';

const running = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let handlersInstalled = false;
let interruptedBy: string | undefined;

/** The signal that interrupted the bench, if one did. */
export function interrupted(): string | undefined {
  return interruptedBy;
}

/** Signals the child's process group (the child and anything it started). */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

export function hasCommand(command: string, args: readonly string[] = ['--version']): boolean {
  const result = spawnSync(command, [...args], { stdio: 'ignore' });
  return result.error === undefined;
}

/** Removes the directory when the bench ends, however it ends. */
export function removeOnExit(dir: string): void {
  installHandlers();
  tempDirs.add(dir);
}

export function keepDir(dir: string): void {
  tempDirs.delete(dir);
}

export interface SpawnOptions {
  readonly cwd: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Pin to this CPU with `taskset -c`, or run unpinned when undefined. */
  readonly cpu?: number | undefined;
  /** Forward the child's stderr to ours (prefixed). */
  readonly label: string;
}

export function startProcess(command: string, args: readonly string[], options: SpawnOptions): ChildProcess {
  installHandlers();
  const [file, argv] = options.cpu === undefined ? [command, [...args]] : ['taskset', ['-c', String(options.cpu), command, ...args]];
  const child = spawn(file, argv, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  running.add(child);
  child.on('exit', () => running.delete(child));
  child.on('error', () => running.delete(child));
  let stderrTail = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderrTail = (stderrTail + chunk.toString()).slice(-4000);
  });
  (child as ChildProcess & { stderrTail: () => string }).stderrTail = () => stderrTail;
  return child;
}

export function stderrOf(child: ChildProcess): string {
  const fn = (child as ChildProcess & { stderrTail?: () => string }).stderrTail;
  return fn ? fn().trim() : '';
}

/** Resolves with the first stdout JSON line whose `event` is "listening". */
export function waitForListening(child: ChildProcess, label: string, timeoutMs = 30_000): Promise<{ url: string }> {
  return new Promise((resolve, reject) => {
    let buffer = '';
    const timer = setTimeout(() => fail(new Error(`${label} did not report "listening" within ${timeoutMs / 1000} s`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString();
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (!line.startsWith('{')) continue;
        try {
          const parsed = JSON.parse(line) as { event?: string; url?: string };
          if (parsed.event === 'listening' && typeof parsed.url === 'string') {
            done();
            resolve({ url: parsed.url });
            return;
          }
        } catch {
          // not our line
        }
      }
    };
    const onExit = (code: number | null, signal: string | null) =>
      fail(new Error(`${label} exited (${signal ?? `code ${code}`}) before listening${stderrOf(child) ? `:\n${stderrOf(child)}` : ''}`));
    const onError = (error: Error) => fail(new Error(`${label} could not start: ${error.message}`));
    function done() {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      child.off('error', onError);
    }
    function fail(error: Error) {
      done();
      reject(error);
    }
    child.stdout?.on('data', onData);
    child.once('exit', onExit);
    child.once('error', onError);
  });
}

/** Runs a child to completion and returns its stdout; rejects on a non-zero exit. */
export function runToEnd(child: ChildProcess, label: string, timeoutMs: number, onLine?: (line: string) => void): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let pending = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      const text = chunk.toString();
      out += text;
      if (!onLine) return;
      pending += text;
      let newline: number;
      while ((newline = pending.indexOf('\n')) >= 0) {
        onLine(pending.slice(0, newline));
        pending = pending.slice(newline + 1);
      }
    });
    const timer = setTimeout(() => {
      signalGroup(child, 'SIGKILL');
      reject(new Error(`${label} did not finish within ${Math.round(timeoutMs / 1000)} s`));
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`${label} could not start: ${error.message}`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${label} failed (${signal ?? `exit code ${code}`})${stderrOf(child) ? `:\n${stderrOf(child)}` : ''}`));
    });
  });
}

/** SIGTERM, then SIGKILL if the child has not exited within the grace period. */
export function stopProcess(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      // Anything the child started and left behind goes too.
      signalGroup(child, 'SIGKILL');
      resolve();
    });
    signalGroup(child, 'SIGTERM');
  });
}

export async function cleanup(): Promise<void> {
  await Promise.all([...running].map((child) => stopProcess(child, 5_000)));
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      interruptedBy = signal;
      process.stderr.write(`\n${signal}: stopping child processes and removing temporary files…\n`);
      cleanup().finally(() => process.exit(130));
    });
  }
  // Last resort if the process leaves without cleanup (an uncaught error): no orphans.
  process.once('exit', () => {
    for (const child of running) signalGroup(child, 'SIGKILL');
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });
}
