/**
 * End-to-end support: the built `keysmith` binary against temporary data directories. Every
 * process spawned here is bounded in time and tracked, so a hung server or CLI fails its test
 * instead of hanging the run, and `stopAll()` leaves nothing behind.
 *
 * The binary is dist/cli/main.js: `npm test` builds it first (pretest); `ensureBuilt()` builds
 * it once if it is missing when the e2e files are run on their own.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { postgresUrl } from '../support/databases.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = join(ROOT, 'dist', 'cli', 'main.js');

const CLI_TIMEOUT_MS = 20_000;
const START_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 5_000;

const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let sharedCwd: string | undefined;

/** Builds dist/ if it is missing; concurrent callers wait for one build. */
export function ensureBuilt(): void {
  if (existsSync(BIN)) return;
  const lock = join(tmpdir(), `keysmith-e2e-build-${Buffer.from(ROOT).toString('base64url').slice(-40)}`);
  let owner = false;
  try {
    mkdirSync(lock);
    owner = true;
  } catch {
    // Someone else is building; wait for them below.
  }
  if (owner) {
    try {
      const build = spawnSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
      if (build.status !== 0) throw new Error(`npm run build failed:\n${build.stdout}\n${build.stderr}`);
    } finally {
      rmSync(lock, { recursive: true, force: true });
    }
    return;
  }
  const deadline = Date.now() + 120_000;
  while (existsSync(lock) && Date.now() < deadline) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run "npm run build" first`);
}

/** A fresh temporary directory, removed by `removeTempDirs()`. */
export function makeTempDir(label = 'e2e'): string {
  const dir = mkdtempSync(join(tmpdir(), `keysmith-${label}-`));
  tempDirs.add(dir);
  return dir;
}

export function removeTempDirs(): void {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
  sharedCwd = undefined;
}

/** The parent's environment without any KEYSMITH_* setting, so tests see only what they give. */
function cleanEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('KEYSMITH_')) env[name] = value;
  for (const [name, value] of Object.entries(extra)) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  return env;
}

export interface CliResult {
  /** The exit code, or null when the process was killed (by the timeout, say). */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout parsed as JSON. */
  json<T = any>(): T;
  /** stderr parsed as JSON (errors under `--json`). */
  errorJson(): { error: { code: string; message: string; status?: number; category?: string } };
}

export interface CliOptions {
  readonly env?: Record<string, string | undefined>;
  /** Written to stdin, which is then closed; stdin is empty otherwise. */
  readonly input?: string;
  readonly cwd?: string;
  readonly timeoutMs?: number;
}

/** Runs the built CLI once; resolves with its exit code and output, killing it after the timeout. */
export function runCli(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  // An empty working directory, so no ./.keysmith root token is found by accident.
  sharedCwd ??= makeTempDir('cwd');
  const cwd = options.cwd ?? sharedCwd;
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd,
    env: cleanEnv(options.env ?? {}),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdin.on('error', () => undefined);
  child.stdin.end(options.input ?? '');
  const timeoutMs = options.timeoutMs ?? CLI_TIMEOUT_MS;
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      children.delete(child);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      const where = `keysmith ${args.join(' ')}`;
      resolvePromise({
        code,
        signal,
        stdout,
        stderr: signal === 'SIGKILL' && code === null ? `${stderr}\n[killed after ${timeoutMs} ms]` : stderr,
        json() {
          try {
            return JSON.parse(stdout);
          } catch {
            throw new Error(`${where}: stdout is not JSON (exit ${code}):\n${stdout}\nstderr:\n${stderr}`);
          }
        },
        errorJson() {
          try {
            return JSON.parse(stderr);
          } catch {
            throw new Error(`${where}: stderr is not JSON (exit ${code}):\n${stderr}`);
          }
        },
      });
    });
  });
}

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** Waits for a child to exit; SIGKILLs it if it is still running after `ms`. */
function waitForExit(child: ChildProcess, ms: number): Promise<ExitInfo> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolvePromise) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal });
    });
  });
}

export interface TestServer {
  readonly url: string;
  readonly dataDir: string;
  readonly rootToken: string;
  readonly child: ChildProcess;
  /** KEYSMITH_ADDR and KEYSMITH_TOKEN (the root token) for this server. */
  readonly env: Record<string, string>;
  /** Runs the CLI against this server with the root token unless `env` overrides it. */
  cli(args: readonly string[], options?: CliOptions): Promise<CliResult>;
  /** SIGTERM, then SIGKILL if it has not exited within a few seconds. */
  stop(): Promise<ExitInfo>;
  /** `kill -9`: no draining, no flushing. */
  crash(): Promise<ExitInfo>;
  /** What the server wrote to stderr so far. */
  stderr(): string;
}

/** Starts `keysmith serve` on a free port and waits for its listening line; `env` adds to a clean environment. */
export function startServer(dataDir: string, extraArgs: readonly string[] = [], serverEnv: Record<string, string> = {}): Promise<TestServer> {
  const child = spawn(
    process.execPath,
    [BIN, 'serve', '--data', dataDir, '--addr', '127.0.0.1:0', '--log-level', 'silent', '--json', ...extraArgs],
    { cwd: dirname(dataDir), env: cleanEnv(serverEnv), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.add(child);
  child.on('exit', () => children.delete(child));
  let stdout = '';
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolvePromise, reject) => {
    let settled = false;
    const fail = (message: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${message}\nserver stderr:\n${stderr}\nserver stdout:\n${stdout}`));
    };
    const timer = setTimeout(() => fail(`keysmith serve did not report listening within ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
    child.on('exit', (code, signal) => fail(`keysmith serve exited (code ${code}, signal ${signal}) before listening`));
    child.on('error', (error) => fail(`keysmith serve could not start: ${error.message}`));
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      if (settled) return;
      for (const line of stdout.split('\n').slice(0, -1)) {
        let event: { event?: string; url?: string };
        try {
          event = JSON.parse(line) as typeof event;
        } catch {
          continue;
        }
        if (event.event !== 'listening' || typeof event.url !== 'string') continue;
        settled = true;
        clearTimeout(timer);
        const url = event.url;
        const rootToken = readFileSync(join(dataDir, 'root-token'), 'utf8').trim();
        const env = { KEYSMITH_ADDR: url, KEYSMITH_TOKEN: rootToken };
        resolvePromise({
          url,
          dataDir,
          rootToken,
          child,
          env,
          cli: (args, options = {}) => runCli(args, { ...options, env: { ...env, ...options.env } }),
          stop: () => {
            child.kill('SIGTERM');
            return waitForExit(child, STOP_GRACE_MS);
          },
          crash: () => {
            child.kill('SIGKILL');
            return waitForExit(child, STOP_GRACE_MS);
          },
          stderr: () => stderr,
        });
        return;
      }
    });
  });
}

/** Stops every process this module started that is still running; for afterAll. */
export async function stopAll(): Promise<void> {
  await Promise.all(
    [...children].map((child) => {
      child.kill('SIGTERM');
      return waitForExit(child, STOP_GRACE_MS);
    }),
  );
  children.clear();
}

/** Issued keys and tokens look like `<prefix>_<live|test>_<22 id chars>_<secret+checksum>`. */
export const ISSUED_KEY_RE = /\b[a-z][a-z0-9]{1,15}_(?:live|test)_[0-9A-Za-z]{22}_[0-9A-Za-z]{49}\b/g;

/** A new PostgreSQL database for one test (for `--database`), dropped by `drop()` even if a server still holds it. */
export async function freshDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `ks_e2e_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: postgresUrl() });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(postgresUrl());
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const dropper = new pg.Client({ connectionString: postgresUrl() });
      await dropper.connect();
      await dropper.query(`drop database if exists ${name} with (force)`);
      await dropper.end();
    },
  };
}

/** Reads until `done` holds (a condition, never a fixed sleep); fails with the last value after `timeoutMs`. */
export async function waitFor<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let value = await read();
  while (!done(value)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value).slice(0, 2000)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    value = await read();
  }
  return value;
}

/** A JSON call to a test server as its root token. */
export async function api<T = any>(server: TestServer, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${server.rootToken}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T };
}
