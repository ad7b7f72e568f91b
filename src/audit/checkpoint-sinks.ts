/**
 * Where checkpoints go: a JSON-lines file (the default, `<data>/audit-checkpoints.jsonl`, mode
 * 0600), a program that gets each line on stdin (to ship it to another host, a WORM bucket, a
 * syslog), or a URL that gets each line POSTed. The point is that they live apart from the
 * database: whoever can rewrite the database should not be able to rewrite these.
 */
import { spawn } from 'node:child_process';
import { chmod, mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface CheckpointSink {
  /** Names the sink in logs and answers (a path, a program, a URL without its query). */
  readonly name: string;
  /** Delivers one line (no trailing newline); rejects when it was not delivered. */
  write(line: string): Promise<void>;
}

/** Appends each line to a file, created 0600, synced before the write counts. */
export function createFileSink(path: string): CheckpointSink {
  return {
    name: path,
    async write(line) {
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
      const handle = await open(path, 'a', 0o600);
      try {
        await handle.write(`${line}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      // A file made by an older version or by hand keeps whatever mode it had: make it private.
      await chmod(path, 0o600);
    },
  };
}

export interface ProgramSinkOptions {
  readonly timeoutMs?: number;
}

/** Runs `argv` (no shell) for each line, the line on stdin; exit 0 within the timeout is delivery. */
export function createCommandSink(argv: readonly string[], options: ProgramSinkOptions = {}): CheckpointSink {
  if (argv.length === 0 || argv[0] === '') throw new Error('the checkpoint command needs a program');
  const timeoutMs = options.timeoutMs ?? 10_000;
  return {
    name: argv[0]!,
    write(line) {
      return new Promise((resolve, reject) => {
        const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'ignore', 'ignore'], detached: process.platform !== 'win32' });
        const timer = setTimeout(() => {
          try {
            // The whole process group: a shell script's children go too.
            process.kill(-child.pid!, 'SIGKILL');
          } catch {
            child.kill('SIGKILL');
          }
        }, timeoutMs);
        child.on('error', (error) => {
          clearTimeout(timer);
          reject(new Error(`checkpoint command ${argv[0]} could not start: ${error.message}`));
        });
        child.on('close', (code, signal) => {
          clearTimeout(timer);
          if (code === 0) resolve();
          else reject(new Error(`checkpoint command ${argv[0]} ${signal ? `was stopped (${signal})` : `exited with status ${code}`}`));
        });
        child.stdin.on('error', () => undefined);
        child.stdin.end(`${line}\n`);
      });
    },
  };
}

/** POSTs each line (`application/json`) to a URL; any 2xx within the timeout is delivery. */
export function createUrlSink(url: string, options: ProgramSinkOptions = {}): CheckpointSink {
  const parsed = new URL(url);
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw new Error('the checkpoint URL must be http:// or https://');
  const timeoutMs = options.timeoutMs ?? 10_000;
  return {
    name: `${parsed.origin}${parsed.pathname}`,
    async write(line) {
      const response = await fetch(parsed, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: line,
        redirect: 'error',
        signal: AbortSignal.timeout(timeoutMs),
      });
      await response.arrayBuffer().catch(() => undefined);
      if (response.status < 200 || response.status > 299) throw new Error(`checkpoint URL ${parsed.origin}${parsed.pathname} answered ${response.status}`);
    },
  };
}
