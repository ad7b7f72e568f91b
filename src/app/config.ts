/**
 * Server configuration from flags, environment and the configuration file, with the defaults a
 * newcomer expects. Flags win over the environment, which wins over the file: the file stands
 * in for KEYSMITH_* variables that are not set (see config-settings.ts).
 */
import { join, resolve } from 'node:path';
import type { ProgramConfig } from '../outbound/index.js';
import { parseDuration, formatDuration } from '../shared/duration.js';
import { DEFAULT_KEY_POLICY, type KeyPolicyConfig } from '../keys/index.js';
import { isPostgresUrl } from '../store/index.js';
import { ConfigError, DEFAULT_DATA_DIR, DEFAULT_HOST, DEFAULT_PORT } from './defaults.js';
import { resolveKekConfig, type KekConfig } from './kek-config.js';
import { SETTINGS } from './config-settings.js';
import { CONFIG_FILE_NAME, ConfigFileError, loadConfigFile, realConfigFileIO, type ConfigFile, type ConfigFileIO } from './config-file.js';
import type { RotationEngineConfig } from '../rotation/index.js';
import { DEFAULT_AUTH_FAILURES, DEFAULT_TIMEOUTS, type AuthFailureOptions, type ServerTimeouts } from '../server/index.js';

export { ConfigError, DEFAULT_DATA_DIR, DEFAULT_HOST, DEFAULT_PORT };

export interface AppConfig {
  readonly dataDir: string;
  /** A postgres:// URL, or undefined for SQLite in the data directory. */
  readonly databaseUrl: string | undefined;
  readonly host: string;
  readonly port: number;
  readonly keyPolicy: KeyPolicyConfig;
  readonly logLevel: string;
  readonly trustProxy: boolean;
  /** The key-encryption key provider (holds a PIN for pkcs11: never log it). */
  readonly kek: KekConfig;
  /** Answer verify calls in the fast lane in front of Fastify (`KEYSMITH_FAST_VERIFY=0` turns it off). */
  readonly fastVerify: boolean;
  /** Rotation engine timings (KEYSMITH_ROTATION_*_MS) and whether this server schedules runs. */
  readonly rotation: Partial<RotationEngineConfig>;
  /** `GET /v1/events` timings: `KEYSMITH_EVENTS_POLL` (1s) and `KEYSMITH_EVENTS_HEARTBEAT` (15s). */
  readonly events: { readonly pollMs: number; readonly heartbeatMs: number };
  /**
   * How long a client may take: `KEYSMITH_REQUEST_TIMEOUT` for the whole request, body included
   * (30s), `KEYSMITH_HEADERS_TIMEOUT` for its headers (10s), `KEYSMITH_KEEPALIVE_TIMEOUT` idle
   * between requests on one connection (72s).
   */
  readonly timeouts: ServerTimeouts;
  /**
   * Failed authentication per source address: one audit event per reason per
   * `KEYSMITH_AUTH_FAILURE_WINDOW` (1m) with a count, and after `KEYSMITH_AUTH_FAILURE_LIMIT`
   * failures in that window (20; 0 never throttles) every call from the address is answered 429
   * until the window ends. `KEYSMITH_AUTH_FAILURE_ADDRESSES` (10000) bounds the addresses tracked.
   */
  readonly authFailures: AuthFailureOptions;
  /** Where signed audit checkpoints go and how often (the KEYSMITH_AUDIT_CHECKPOINTS file, _COMMAND, _URL and _INTERVAL). */
  readonly auditCheckpoints: AuditCheckpointConfig;
  /** The configuration file read, if any. */
  readonly configFile: string | undefined;
  /** Programs `command` connectors and deploy hooks may run (only from the file). */
  readonly programs: readonly ProgramConfig[];
  /** Hosts connectors, health checks and deploy hooks may call (only from the file). */
  readonly egress: { readonly allow: readonly string[] };
  /** Where each KEYSMITH_* setting's value came from, for `keysmith config check`. */
  readonly sources: Readonly<Record<string, SettingSource>>;
  /** The setting texts in effect (flag, environment or file), keyed by environment name. */
  readonly settings: Readonly<Record<string, string>>;
}

export interface AuditCheckpointConfig {
  /** The checkpoints file: `KEYSMITH_AUDIT_CHECKPOINTS`, `<data>/audit-checkpoints.jsonl` by default; `off` for none. */
  readonly file: string | undefined;
  /** A program (argv, no shell) that gets each checkpoint line on stdin: `KEYSMITH_AUDIT_CHECKPOINT_COMMAND`, a JSON array. */
  readonly command: readonly string[] | undefined;
  /** A URL each checkpoint line is POSTed to: `KEYSMITH_AUDIT_CHECKPOINT_URL`. */
  readonly url: string | undefined;
  /** At most one checkpoint per interval while events are written: `KEYSMITH_AUDIT_CHECKPOINT_INTERVAL` (1m). */
  readonly intervalMs: number;
}

export type SettingSource = 'flag' | 'env' | 'file';

export interface ConfigInput {
  readonly data?: string | undefined;
  readonly database?: string | undefined;
  readonly addr?: string | undefined;
  readonly defaultTtl?: string | undefined;
  readonly maxTtl?: string | undefined;
  readonly cacheTtl?: string | undefined;
  readonly logLevel?: string | undefined;
  /** `--config FILE`. */
  readonly config?: string | undefined;
}

const FLAG_SETTINGS: ReadonlyArray<readonly [keyof ConfigInput, string]> = [
  ['data', 'KEYSMITH_DATA'],
  ['database', 'KEYSMITH_DATABASE_URL'],
  ['addr', 'KEYSMITH_LISTEN'],
  ['defaultTtl', 'KEYSMITH_DEFAULT_TTL'],
  ['maxTtl', 'KEYSMITH_MAX_TTL'],
  ['cacheTtl', 'KEYSMITH_CACHE_TTL'],
  ['logLevel', 'KEYSMITH_LOG_LEVEL'],
];

/**
 * The configuration file in effect: `--config`, else KEYSMITH_CONFIG, else `keysmith.yaml` in
 * the data directory when there is one. A file named explicitly must exist.
 */
export function findConfigFile(input: ConfigInput, env: NodeJS.ProcessEnv, io: ConfigFileIO = realConfigFileIO): ConfigFile | undefined {
  const explicit = input.config ?? (env.KEYSMITH_CONFIG || undefined);
  if (explicit !== undefined) return loadConfigFile(resolve(explicit), io);
  const dataDir = resolve(input.data ?? (env.KEYSMITH_DATA || undefined) ?? DEFAULT_DATA_DIR);
  const path = join(dataDir, CONFIG_FILE_NAME);
  if (io.mode(path) === undefined) return undefined;
  const file = loadConfigFile(path, io);
  if (file.env.KEYSMITH_DATA !== undefined && resolve(file.env.KEYSMITH_DATA) !== dataDir) {
    throw new ConfigFileError([`${path}: data may be set only in a file given by --config or KEYSMITH_CONFIG (this one is found through the data directory)`]);
  }
  return file;
}

export function resolveConfig(input: ConfigInput, processEnv: NodeJS.ProcessEnv = process.env, io: ConfigFileIO = realConfigFileIO): AppConfig {
  const file = findConfigFile(input, processEnv, io);
  // The environment overrides the file; a variable set but empty counts as unset.
  const env: NodeJS.ProcessEnv = { ...(file?.env ?? {}) };
  const sources: Record<string, SettingSource> = {};
  for (const name of Object.keys(file?.env ?? {})) sources[name] = 'file';
  for (const [name, value] of Object.entries(processEnv)) {
    if (value === undefined || value === '') continue;
    env[name] = value;
    if (name.startsWith('KEYSMITH_') && SETTINGS.some((spec) => spec.env === name)) sources[name] = 'env';
  }
  // Only the file's settings: never KEYSMITH_MASTER_KEY or anything else the environment holds.
  const settings: Record<string, string> = {};
  for (const { env: name } of SETTINGS) if (env[name] !== undefined) settings[name] = env[name]!;
  for (const [flag, name] of FLAG_SETTINGS) {
    const value = input[flag];
    if (value !== undefined) {
      settings[name] = value;
      sources[name] = 'flag';
    }
  }
  const dataDir = resolve(input.data ?? env.KEYSMITH_DATA ?? DEFAULT_DATA_DIR);
  const databaseUrl = input.database ?? env.KEYSMITH_DATABASE_URL;
  if (databaseUrl !== undefined && !isPostgresUrl(databaseUrl)) {
    throw new ConfigError('--database must be a postgres:// URL (leave it out for SQLite in the data directory)');
  }
  const { host, port } = parseAddr(input.addr ?? env.KEYSMITH_LISTEN ?? `${DEFAULT_HOST}:${DEFAULT_PORT}`);
  const maxTtlMs = durationSetting(input.maxTtl ?? env.KEYSMITH_MAX_TTL, 'max-ttl', DEFAULT_KEY_POLICY.maxTtlMs);
  const defaultTtlMs = durationSetting(input.defaultTtl ?? env.KEYSMITH_DEFAULT_TTL, 'default-ttl', Math.min(DEFAULT_KEY_POLICY.defaultTtlMs, maxTtlMs));
  if (defaultTtlMs > maxTtlMs) {
    throw new ConfigError(`--default-ttl ${formatDuration(defaultTtlMs)} is longer than --max-ttl ${formatDuration(maxTtlMs)}`);
  }
  const cacheTtlMs = durationSetting(input.cacheTtl ?? env.KEYSMITH_CACHE_TTL, 'cache-ttl', DEFAULT_KEY_POLICY.cacheTtlMs);
  return {
    dataDir,
    databaseUrl,
    host,
    port,
    keyPolicy: { ...DEFAULT_KEY_POLICY, defaultTtlMs, maxTtlMs, cacheTtlMs },
    logLevel: input.logLevel ?? env.KEYSMITH_LOG_LEVEL ?? 'info',
    trustProxy: env.KEYSMITH_TRUST_PROXY === '1',
    kek: resolveKekConfig(env),
    fastVerify: env.KEYSMITH_FAST_VERIFY !== '0',
    rotation: rotationSettings(env),
    events: {
      pollMs: durationSetting(env.KEYSMITH_EVENTS_POLL, 'events-poll', 1_000),
      heartbeatMs: durationSetting(env.KEYSMITH_EVENTS_HEARTBEAT, 'events-heartbeat', 15_000),
    },
    timeouts: timeoutSettings(env),
    authFailures: {
      windowMs: durationSetting(env.KEYSMITH_AUTH_FAILURE_WINDOW, 'auth-failure-window', DEFAULT_AUTH_FAILURES.windowMs),
      limit: wholeNumber(env, 'KEYSMITH_AUTH_FAILURE_LIMIT', DEFAULT_AUTH_FAILURES.limit, 0),
      maxAddresses: wholeNumber(env, 'KEYSMITH_AUTH_FAILURE_ADDRESSES', DEFAULT_AUTH_FAILURES.maxAddresses, 1),
    },
    auditCheckpoints: auditCheckpointSettings(dataDir, env),
    configFile: file?.path,
    programs: file?.programs ?? [],
    egress: { allow: file?.egress.allow ?? [] },
    sources,
    settings,
  };
}

/** The default checkpoints file of a data directory. */
export function defaultCheckpointsFile(dataDir: string): string {
  return join(dataDir, 'audit-checkpoints.jsonl');
}

function auditCheckpointSettings(dataDir: string, env: NodeJS.ProcessEnv): AuditCheckpointConfig {
  const fileSetting = env.KEYSMITH_AUDIT_CHECKPOINTS;
  const file = fileSetting === 'off' ? undefined : resolve(fileSetting || defaultCheckpointsFile(dataDir));
  let command: string[] | undefined;
  const commandText = env.KEYSMITH_AUDIT_CHECKPOINT_COMMAND;
  if (commandText !== undefined && commandText !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(commandText);
    } catch {
      parsed = undefined;
    }
    if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every((a) => typeof a === 'string') || !(parsed[0] as string).startsWith('/')) {
      throw new ConfigError('KEYSMITH_AUDIT_CHECKPOINT_COMMAND must be a JSON array of strings starting with an absolute program path, e.g. ["/usr/local/bin/ship-checkpoint","--to","vault-host"]');
    }
    command = parsed as string[];
  }
  const url = env.KEYSMITH_AUDIT_CHECKPOINT_URL || undefined;
  if (url !== undefined && !/^https?:\/\/[^\s]+$/.test(url)) throw new ConfigError('KEYSMITH_AUDIT_CHECKPOINT_URL must be an http:// or https:// URL');
  const intervalMs = durationSetting(env.KEYSMITH_AUDIT_CHECKPOINT_INTERVAL, 'audit-checkpoint-interval', 60_000);
  if (intervalMs < 1_000) throw new ConfigError('KEYSMITH_AUDIT_CHECKPOINT_INTERVAL must be at least 1s');
  return { file, command, url, intervalMs };
}

/** Accepts `host:port`, `:port`, `port` or an http:// URL. */
export function parseAddr(text: string): { host: string; port: number } {
  const stripped = text.replace(/^https?:\/\//, '').replace(/\/$/, '');
  const match = /^(?:(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)?:)?([0-9]{1,5})$/.exec(stripped);
  const port = match ? Number(match[2]) : NaN;
  if (!match || port < 0 || port > 65535) {
    throw new ConfigError(`--addr "${text}" is not host:port (for example 127.0.0.1:7370)`);
  }
  return { host: (match[1] ?? DEFAULT_HOST).replace(/^\[|\]$/g, ''), port };
}

/** Engine timings in milliseconds from the environment; mostly for tests and drills. */
function rotationSettings(env: NodeJS.ProcessEnv): Partial<RotationEngineConfig> {
  const ms = (name: string): number | undefined => {
    const text = env[`KEYSMITH_ROTATION_${name}_MS`];
    if (text === undefined) return undefined;
    if (!/^[1-9][0-9]{0,9}$/.test(text)) throw new ConfigError(`KEYSMITH_ROTATION_${name}_MS must be a whole number of milliseconds`);
    return Number(text);
  };
  const out: { -readonly [K in keyof RotationEngineConfig]?: RotationEngineConfig[K] } = {};
  const tick = ms('TICK');
  const lease = ms('LEASE');
  const retry = ms('RETRY');
  const maxBackoff = ms('MAX_BACKOFF');
  const traffic = ms('TRAFFIC_CHECK');
  const check = ms('CHECK_INTERVAL');
  const schedule = ms('SCHEDULE');
  if (schedule !== undefined) out.scheduleEveryMs = schedule;
  if (tick !== undefined) out.tickMs = tick;
  if (lease !== undefined) out.leaseMs = lease;
  if (retry !== undefined) out.retryBaseMs = retry;
  if (maxBackoff !== undefined) out.maxBackoffMs = maxBackoff;
  if (traffic !== undefined) out.trafficCheckMs = traffic;
  if (check !== undefined) out.checks = { intervalMs: check, timeoutMs: Math.max(check * 4, 2000) };
  if (env.KEYSMITH_ROTATION_SCHEDULER === '0') out.scheduler = false;
  return out;
}

function wholeNumber(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number): number {
  const text = env[name];
  if (text === undefined) return fallback;
  if (!/^[0-9]{1,9}$/.test(text) || Number(text) < min) throw new ConfigError(`${name} must be a whole number, at least ${min}`);
  return Number(text);
}

function timeoutSettings(env: NodeJS.ProcessEnv): ServerTimeouts {
  const setting = (name: string, fallback: number): number => {
    const ms = durationSetting(env[`KEYSMITH_${name}`], name.toLowerCase().replace(/_/g, '-'), fallback);
    if (ms < 1_000) throw new ConfigError(`KEYSMITH_${name} must be at least 1s (a timeout of 0 would let slow clients hold connections forever)`);
    return ms;
  };
  const requestMs = setting('REQUEST_TIMEOUT', DEFAULT_TIMEOUTS.requestMs);
  const headersMs = setting('HEADERS_TIMEOUT', Math.min(DEFAULT_TIMEOUTS.headersMs, requestMs));
  if (headersMs > requestMs) {
    throw new ConfigError(`KEYSMITH_HEADERS_TIMEOUT ${formatDuration(headersMs)} is longer than KEYSMITH_REQUEST_TIMEOUT ${formatDuration(requestMs)}`);
  }
  return { requestMs, headersMs, keepAliveMs: setting('KEEPALIVE_TIMEOUT', DEFAULT_TIMEOUTS.keepAliveMs) };
}

function durationSetting(text: string | undefined, name: string, fallback: number): number {
  if (text === undefined) return fallback;
  try {
    return parseDuration(text, name);
  } catch {
    throw new ConfigError(`--${name} "${text}" is not a duration such as 24h or 90d`);
  }
}
