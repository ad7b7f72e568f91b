/**
 * Every server setting the configuration file can hold, with the environment variable that
 * overrides it. One table drives the file's parser, the environment it stands in for,
 * `keysmith config check` and docs/configuration.md (a test keeps that page in step), so a new
 * KEYSMITH_* setting is one row here.
 */
import { tryParseDuration } from '../shared/duration.js';

export type SettingKind = 'string' | 'duration' | 'boolean' | 'milliseconds' | 'count' | 'enum' | 'addr' | 'path' | 'argv';

export interface SettingSpec {
  /** Dotted path in the file: `keys.maxTtl`. */
  readonly key: string;
  readonly env: string;
  readonly kind: SettingKind;
  /** The default as it would be written in the file; undefined when there is none. */
  readonly default?: string;
  readonly values?: readonly string[];
  /** Never printed (`config check` shows it as set or not). */
  readonly secret?: boolean;
  /** For a boolean: the environment's spelling of false and true (`0`/`1` unless given). */
  readonly envBoolean?: readonly [string, string];
  readonly doc: string;
}

export const SETTINGS: readonly SettingSpec[] = [
  { key: 'data', env: 'KEYSMITH_DATA', kind: 'path', default: '.keysmith', doc: 'The data directory: master key, SQLite database, root token. Only in a file given by --config or KEYSMITH_CONFIG.' },
  { key: 'database', env: 'KEYSMITH_DATABASE_URL', kind: 'string', secret: true, doc: 'A postgres:// URL; SQLite in the data directory when unset. Printed without its password.' },
  { key: 'listen', env: 'KEYSMITH_LISTEN', kind: 'addr', default: '127.0.0.1:7370', doc: 'Address and port the server listens on (`serve --addr`).' },
  { key: 'logLevel', env: 'KEYSMITH_LOG_LEVEL', kind: 'enum', default: 'info', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], doc: 'Log level (`serve --log-level`).' },
  { key: 'trustProxy', env: 'KEYSMITH_TRUST_PROXY', kind: 'boolean', default: 'false', doc: 'Take the client address from X-Forwarded-For: the last entry, the one the proxy in front appended (only behind a proxy you run).' },
  { key: 'fastVerify', env: 'KEYSMITH_FAST_VERIFY', kind: 'boolean', default: 'true', doc: 'Answer key verification in the fast lane in front of Fastify.' },
  { key: 'keys.defaultTtl', env: 'KEYSMITH_DEFAULT_TTL', kind: 'duration', default: '30d', doc: 'Lifetime of an issued key that asks for none (`--default-ttl`).' },
  { key: 'keys.maxTtl', env: 'KEYSMITH_MAX_TTL', kind: 'duration', default: '90d', doc: 'Longest lifetime a key may have (`--max-ttl`).' },
  { key: 'keys.cacheTtl', env: 'KEYSMITH_CACHE_TTL', kind: 'duration', default: '10m', doc: 'How long a verified key stays in the verification cache (`--cache-ttl`).' },
  { key: 'kek.provider', env: 'KEYSMITH_KEK_PROVIDER', kind: 'enum', default: 'local', values: ['local', 'pkcs11'], doc: 'Key-encryption key provider: the local master key, or a PKCS#11 token.' },
  { key: 'kek.pkcs11.module', env: 'KEYSMITH_PKCS11_MODULE', kind: 'path', default: '/usr/lib/softhsm/libsofthsm2.so', doc: 'The PKCS#11 module (shared library).' },
  { key: 'kek.pkcs11.token', env: 'KEYSMITH_PKCS11_TOKEN', kind: 'string', doc: 'The PKCS#11 token label.' },
  { key: 'kek.pkcs11.pin', env: 'KEYSMITH_PKCS11_PIN', kind: 'string', secret: true, doc: 'The token user PIN. Never printed; prefer pinFile.' },
  { key: 'kek.pkcs11.pinFile', env: 'KEYSMITH_PKCS11_PIN_FILE', kind: 'path', doc: 'A file holding the token user PIN.' },
  { key: 'rotation.scheduler', env: 'KEYSMITH_ROTATION_SCHEDULER', kind: 'boolean', default: 'true', doc: 'Whether this server starts scheduled rotations.' },
  { key: 'rotation.scheduleMs', env: 'KEYSMITH_ROTATION_SCHEDULE_MS', kind: 'milliseconds', default: '60000', doc: 'How often the scheduler looks for due targets.' },
  { key: 'rotation.tickMs', env: 'KEYSMITH_ROTATION_TICK_MS', kind: 'milliseconds', default: '1000', doc: 'How often the run engine looks for work.' },
  { key: 'rotation.leaseMs', env: 'KEYSMITH_ROTATION_LEASE_MS', kind: 'milliseconds', default: '30000', doc: 'How long a server holds a run before another may take it over.' },
  { key: 'rotation.retryMs', env: 'KEYSMITH_ROTATION_RETRY_MS', kind: 'milliseconds', default: '2000', doc: 'First retry delay of a failed step (doubles each time).' },
  { key: 'rotation.maxBackoffMs', env: 'KEYSMITH_ROTATION_MAX_BACKOFF_MS', kind: 'milliseconds', default: '900000', doc: 'Longest retry delay.' },
  { key: 'rotation.trafficCheckMs', env: 'KEYSMITH_ROTATION_TRAFFIC_CHECK_MS', kind: 'milliseconds', default: '60000', doc: 'How often the traffic gate looks at key use.' },
  { key: 'rotation.checkIntervalMs', env: 'KEYSMITH_ROTATION_CHECK_INTERVAL_MS', kind: 'milliseconds', default: '5000', doc: 'Pause between two health probes (the probe timeout is four times this, at least 2 s).' },
  { key: 'events.poll', env: 'KEYSMITH_EVENTS_POLL', kind: 'duration', default: '1s', doc: '`GET /v1/events`: how often new events are looked for.' },
  { key: 'events.heartbeat', env: 'KEYSMITH_EVENTS_HEARTBEAT', kind: 'duration', default: '15s', doc: '`GET /v1/events`: heartbeat interval.' },
  { key: 'audit.checkpoints', env: 'KEYSMITH_AUDIT_CHECKPOINTS', kind: 'path', doc: 'The signed audit checkpoints file, `<data>/audit-checkpoints.jsonl` when unset; `off` for none.' },
  { key: 'audit.checkpointCommand', env: 'KEYSMITH_AUDIT_CHECKPOINT_COMMAND', kind: 'argv', doc: 'A program given each checkpoint line on stdin, run without a shell: a list (a JSON array in the environment) starting with an absolute path.' },
  { key: 'audit.checkpointUrl', env: 'KEYSMITH_AUDIT_CHECKPOINT_URL', kind: 'string', secret: true, doc: 'An http(s) URL each checkpoint line is POSTed to. Never printed (it may carry a token).' },
  { key: 'audit.checkpointInterval', env: 'KEYSMITH_AUDIT_CHECKPOINT_INTERVAL', kind: 'duration', default: '1m', doc: 'The shortest time between two periodic checkpoints (at least 1s).' },
  { key: 'http.requestTimeout', env: 'KEYSMITH_REQUEST_TIMEOUT', kind: 'duration', default: '30s', doc: 'A client must send a whole request, body included, within this, or it is answered 408 and the connection closed (at least 1s).' },
  { key: 'http.headersTimeout', env: 'KEYSMITH_HEADERS_TIMEOUT', kind: 'duration', default: '10s', doc: 'A client must send a request\'s headers within this (at most the request timeout).' },
  { key: 'http.keepAliveTimeout', env: 'KEYSMITH_KEEPALIVE_TIMEOUT', kind: 'duration', default: '72s', doc: 'An idle kept-alive connection is closed after this.' },
  { key: 'auth.failureWindow', env: 'KEYSMITH_AUTH_FAILURE_WINDOW', kind: 'duration', default: '1m', doc: 'Failed authentication is written once per source address and reason per window, then as one `auth.failed` event with a `count`.' },
  { key: 'auth.failureLimit', env: 'KEYSMITH_AUTH_FAILURE_LIMIT', kind: 'count', default: '20', doc: 'Failures in a window after which every call from the address needing a token is answered 429 with Retry-After until the window ends; 0 never throttles.' },
  { key: 'auth.failureAddresses', env: 'KEYSMITH_AUTH_FAILURE_ADDRESSES', kind: 'count', default: '10000', doc: 'Source addresses (IPv6 by /64) tracked at once; the oldest is written out and dropped for a new one.' },
];

/** The sections that are not KEYSMITH_* settings: they exist only in the file. */
export const FILE_ONLY_SECTIONS = ['programs', 'egress'] as const;

/** Checks a value of the file against its setting; returns the environment text or a problem. */
export function settingText(spec: SettingSpec, value: unknown): { text: string } | { problem: string } {
  switch (spec.kind) {
    case 'boolean': {
      if (typeof value !== 'boolean') return { problem: `${spec.key} must be true or false` };
      const [no, yes] = spec.envBoolean ?? ['0', '1'];
      return { text: value ? yes : no };
    }
    case 'milliseconds':
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 9_999_999_999) return { problem: `${spec.key} must be a whole number of milliseconds` };
      return { text: String(value) };
    case 'count':
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 999_999_999) return { problem: `${spec.key} must be a whole number` };
      return { text: String(value) };
    case 'duration':
      if (typeof value !== 'string' || tryParseDuration(value) === undefined) return { problem: `${spec.key} must be a duration such as 90s, 15m, 24h or 30d` };
      return { text: value };
    case 'enum':
      if (typeof value !== 'string' || !spec.values!.includes(value)) return { problem: `${spec.key} must be one of ${spec.values!.join(', ')}` };
      return { text: value };
    case 'addr':
      // `listen: 7370` reads as a number: a bare port.
      if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 65535) return { text: String(value) };
      if (typeof value !== 'string' || !/^(?:(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)?:)?[0-9]{1,5}$/.test(value)) return { problem: `${spec.key} must be host:port, such as 127.0.0.1:7370` };
      return { text: value };
    case 'argv':
      // A command line as a list, so no shell ever splits it; the environment holds it as JSON.
      if (!Array.isArray(value) || value.length === 0 || !value.every((arg) => typeof arg === 'string') || !(value[0] as string).startsWith('/')) {
        return { problem: `${spec.key} must be a list of strings starting with an absolute program path, such as [/usr/local/bin/ship, --to, evidence]` };
      }
      return { text: JSON.stringify(value) };
    case 'path':
    case 'string':
      if (typeof value !== 'string' || value === '') return { problem: `${spec.key} must be a non-empty string` };
      return { text: value };
  }
}
