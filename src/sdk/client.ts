/**
 * A typed HTTP client for Keysmith's API. Problems come back as KeysmithApiError with the
 * server's stable codes; verification outcomes are values, as on the wire.
 */
import type {
  AuditPageWire,
  ChainVerificationWire,
  CheckpointKeyWire,
  VerifyAuditBodyWire,
  WrittenCheckpointWire,
  CreateKeyBodyWire,
  CreateTokenBodyWire,
  IssuedKeyWire,
  KeyPageWire,
  KeyRecordWire,
  KeyUsageWire,
  ListAuditQueryWire,
  ListKeysQueryWire,
  ListSecretsQueryWire,
  MoveStageBodyWire,
  PutSecretBodyWire,
  PutSecretResultWire,
  ReadSecretQueryWire,
  ReadersQueryWire,
  RotateKeyBodyWire,
  SecretMetadataWire,
  SecretPageWire,
  SecretReadersWire,
  SecretValueWire,
  SecretVersionsWire,
  KekStatusWire,
  CasBodyWire,
  DestroyVersionsBodyWire,
  RotatedKeyWire,
  UpdateKeyBodyWire,
  VerifyKeyBodyWire,
  VerifyResultWire,
  DeletedRotationPolicyWire,
  PutRotationPolicyBodyWire,
  PutRotationPolicyResultWire,
  RotationPolicyListWire,
  RotationPolicyRecordWire,
  StartRotationBodyWire,
  RotationRunWire,
  RotationRunDetailWire,
  RotationRunListWire,
  ListRotationRunsQueryWire,
  RotationStatsWire,
  StreamEventWire,
  CreateIncidentBodyWire,
  IncidentPlanWire,
  IncidentResultWire,
  IncidentRecordWire,
  IncidentPageWire,
  ListIncidentsQueryWire,
} from '../contract/index.js';
import { SseParser } from './sse.js';

export const DEFAULT_ADDR = 'http://127.0.0.1:7370';

export interface ProblemWire {
  readonly type?: string;
  readonly title?: string;
  readonly status: number;
  readonly detail?: string;
  readonly code?: string;
  readonly error?: string;
  readonly errors?: ReadonlyArray<{ field?: string; message: string }>;
  readonly requestId?: string;
}

export class KeysmithApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly error: string;
  readonly problem: ProblemWire;
  constructor(problem: ProblemWire) {
    super(problem.detail ?? problem.title ?? `HTTP ${problem.status}`);
    this.name = 'KeysmithApiError';
    this.status = problem.status;
    this.code = problem.code ?? 'unknown';
    this.error = problem.error ?? 'ERR_UNKNOWN';
    this.problem = problem;
  }
}

/** The server could not be reached at all. */
export class KeysmithConnectionError extends Error {
  constructor(addr: string, cause: unknown) {
    super(`cannot reach Keysmith at ${addr}: ${cause instanceof Error ? (cause.cause instanceof Error ? cause.cause.message : cause.message) : String(cause)}`);
    this.name = 'KeysmithConnectionError';
  }
}

export interface KeysmithClientOptions {
  readonly addr?: string;
  readonly token?: string;
  readonly fetch?: typeof fetch;
  readonly userAgent?: string;
}

/** What `events()` streams and how it recovers from a dropped connection. */
export interface EventsOptions {
  /** Action families, e.g. `['key', 'rotation']`; every family by default. */
  readonly types?: readonly string[];
  /** An id (`key_…`, `sec_…`) or a secret path prefix (`payments/`). */
  readonly target?: string;
  /** Replay events after this sequence number first; from now when absent. */
  readonly since?: number;
  /** Ends the iteration (the iterator returns; nothing is thrown). */
  readonly signal?: AbortSignal;
  /** Reconnect after a dropped stream, resuming from the last id; default true. */
  readonly reconnect?: boolean;
  /** First wait before reconnecting (doubling up to 30 s while it keeps failing); 1 s unless the server says otherwise. */
  readonly retryMs?: number;
}

const MAX_RETRY_MS = 30_000;

type Query = Record<string, string | number | boolean | readonly string[] | undefined>;

/**
 * `/v1/secrets/<path>[/<action>]`. Valid path characters are URL-safe and go in as they are;
 * anything else is escaped so it cannot reach another route, and `.`/`..` segments (which URLs
 * resolve away, escaped or not) are refused before any request.
 */
export function secretUrl(path: string, action?: string): string {
  const segments = path.split('/');
  if (segments.some((segment) => segment === '.' || segment === '..')) {
    throw new RangeError('a secret path may not contain "." or ".." segments');
  }
  return `/v1/secrets/${segments.map(encodeURIComponent).join('/')}${action === undefined ? '' : `/${action}`}`;
}

function policyUrl(name: string): string {
  return `/v1/rotation/policies/${encodeURIComponent(name)}`;
}

export class KeysmithClient {
  readonly addr: string;
  readonly #token: string | undefined;
  readonly #fetch: typeof fetch;
  readonly #userAgent: string;

  constructor(options: KeysmithClientOptions = {}) {
    this.addr = (options.addr ?? DEFAULT_ADDR).replace(/\/+$/, '');
    this.#token = options.token;
    this.#fetch = options.fetch ?? fetch;
    this.#userAgent = options.userAgent ?? 'keysmith-sdk';
  }

  createKey(body: CreateKeyBodyWire): Promise<IssuedKeyWire> {
    return this.#call('POST', '/v1/keys', { body });
  }
  listKeys(query: ListKeysQueryWire = {}): Promise<KeyPageWire> {
    return this.#call('GET', '/v1/keys', { query: query as Query });
  }
  getKey(id: string): Promise<KeyRecordWire> {
    return this.#call('GET', `/v1/keys/${encodeURIComponent(id)}`);
  }
  verifyKey(body: VerifyKeyBodyWire): Promise<VerifyResultWire> {
    return this.#call('POST', '/v1/keys/verify', { body });
  }
  rotateKey(id: string, body: RotateKeyBodyWire = {}): Promise<RotatedKeyWire> {
    return this.#call('POST', `/v1/keys/${encodeURIComponent(id)}/rotate`, { body });
  }
  revokeKey(id: string, reason?: string): Promise<KeyRecordWire> {
    return this.#call('POST', `/v1/keys/${encodeURIComponent(id)}/revoke`, { body: reason === undefined ? {} : { reason } });
  }
  disableKey(id: string): Promise<KeyRecordWire> {
    return this.#call('POST', `/v1/keys/${encodeURIComponent(id)}/disable`, { body: {} });
  }
  enableKey(id: string): Promise<KeyRecordWire> {
    return this.#call('POST', `/v1/keys/${encodeURIComponent(id)}/enable`, { body: {} });
  }
  retireKey(id: string): Promise<KeyRecordWire> {
    return this.#call('POST', `/v1/keys/${encodeURIComponent(id)}/retire`, { body: {} });
  }
  updateKey(id: string, body: UpdateKeyBodyWire): Promise<KeyRecordWire> {
    return this.#call('PATCH', `/v1/keys/${encodeURIComponent(id)}`, { body });
  }
  keyUsage(id: string, since?: string): Promise<KeyUsageWire> {
    return this.#call('GET', `/v1/keys/${encodeURIComponent(id)}/usage`, { query: { since } });
  }
  createToken(body: CreateTokenBodyWire): Promise<IssuedKeyWire> {
    return this.#call('POST', '/v1/tokens', { body });
  }
  listTokens(query: { cursor?: string; limit?: number } = {}): Promise<KeyPageWire> {
    return this.#call('GET', '/v1/tokens', { query });
  }
  getToken(id: string): Promise<KeyRecordWire> {
    return this.#call('GET', `/v1/tokens/${encodeURIComponent(id)}`);
  }
  rotateToken(id: string, body: RotateKeyBodyWire = {}): Promise<RotatedKeyWire> {
    return this.#call('POST', `/v1/tokens/${encodeURIComponent(id)}/rotate`, { body });
  }
  revokeToken(id: string, reason?: string): Promise<KeyRecordWire> {
    return this.#call('POST', `/v1/tokens/${encodeURIComponent(id)}/revoke`, { body: reason === undefined ? {} : { reason } });
  }
  listAudit(query: ListAuditQueryWire = {}): Promise<AuditPageWire> {
    return this.#call('GET', '/v1/audit', { query: query as Query });
  }
  /** Checks the keyed chain against the server's checkpoints file and the checkpoints given. */
  verifyAudit(body: VerifyAuditBodyWire = {}): Promise<ChainVerificationWire> {
    return this.#call('POST', '/v1/audit/verify', { body });
  }
  /** Signs the audit head now; the server writes it to its sinks once per head. */
  auditCheckpoint(): Promise<WrittenCheckpointWire> {
    return this.#call('POST', '/v1/audit/checkpoints', { body: {} });
  }
  /** The Ed25519 key that verifies audit checkpoints. */
  auditCheckpointKey(): Promise<CheckpointKeyWire> {
    return this.#call('GET', '/v1/audit/checkpoint-key');
  }

  /** Stores a new version; `cas` guards against a concurrent writer, `requestToken` makes a retry safe. */
  putSecret(path: string, body: PutSecretBodyWire): Promise<PutSecretResultWire> {
    return this.#call('PUT', secretUrl(path), { body });
  }
  /** The value of the `current` stage, or of the stage or version asked for. */
  readSecret(path: string, query: ReadSecretQueryWire = {}): Promise<SecretValueWire> {
    return this.#call('GET', secretUrl(path), { query });
  }
  secretVersions(path: string): Promise<SecretVersionsWire> {
    return this.#call('GET', secretUrl(path, 'versions'));
  }
  /** Moves `current` to the `pending` version (and the old current to `previous`). */
  promoteSecret(path: string, body: CasBodyWire = {}): Promise<SecretMetadataWire> {
    return this.#call('POST', secretUrl(path, 'promote'), { body });
  }
  /** Moves `current` back to the `previous` version. */
  rollbackSecret(path: string, body: CasBodyWire = {}): Promise<SecretMetadataWire> {
    return this.#call('POST', secretUrl(path, 'rollback'), { body });
  }
  /** Puts a stage on a version, or takes it off with `version: null`. */
  moveSecretStage(path: string, body: MoveStageBodyWire): Promise<SecretMetadataWire> {
    return this.#call('POST', secretUrl(path, 'stages'), { body });
  }
  /** Schedules the secret for deletion after the recovery window; `restoreSecret` undoes it until then. */
  deleteSecret(path: string, options: { recoveryWindow?: string } = {}): Promise<SecretMetadataWire> {
    return this.#call('DELETE', secretUrl(path), { query: { recoveryWindow: options.recoveryWindow } });
  }
  restoreSecret(path: string): Promise<SecretMetadataWire> {
    return this.#call('POST', secretUrl(path, 'restore'), { body: {} });
  }
  /** Erases the values of some versions for good; their metadata stays. */
  destroySecretVersions(path: string, body: DestroyVersionsBodyWire): Promise<SecretVersionsWire> {
    return this.#call('POST', secretUrl(path, 'destroy'), { body });
  }
  listSecrets(query: ListSecretsQueryWire = {}): Promise<SecretPageWire> {
    return this.#call('GET', '/v1/secrets', { query });
  }
  /** Who read a version (the current one unless a stage or version is given), and how often. */
  secretReaders(path: string, query: ReadersQueryWire = {}): Promise<SecretReadersWire> {
    return this.#call('GET', secretUrl(path, 'readers'), { query });
  }
  kekStatus(): Promise<KekStatusWire> {
    return this.#call('GET', '/v1/kek');
  }
  /** Makes a new key-encryption key current; data keys are re-wrapped under it in the background. */
  rotateKek(): Promise<KekStatusWire> {
    return this.#call('POST', '/v1/kek/rotate', { body: {} });
  }
  /** Refused with ERR_KEK_VERSION_IN_USE while data keys are still wrapped under the version. */
  retireKek(version: number): Promise<KekStatusWire> {
    return this.#call('POST', `/v1/kek/versions/${encodeURIComponent(String(version))}/retire`, { body: {} });
  }

  listRotationPolicies(): Promise<RotationPolicyListWire> {
    return this.#call('GET', '/v1/rotation/policies');
  }
  getRotationPolicy(name: string): Promise<RotationPolicyRecordWire> {
    return this.#call('GET', policyUrl(name));
  }
  /** Creates or replaces a policy; `version` 0 creates only, n replaces only version n (409 otherwise). */
  putRotationPolicy(name: string, body: PutRotationPolicyBodyWire): Promise<PutRotationPolicyResultWire> {
    return this.#call('PUT', policyUrl(name), { body });
  }
  deleteRotationPolicy(name: string, options: { version?: number } = {}): Promise<DeletedRotationPolicyWire> {
    return this.#call('DELETE', policyUrl(name), { query: { version: options.version } });
  }

  /** Starts a rotation run; a 409 ERR_ROTATION_IN_PROGRESS names the run already rotating the target. */
  startRotation(body: StartRotationBodyWire): Promise<RotationRunWire> {
    return this.#call('POST', '/v1/rotations', { body });
  }
  listRotations(query: ListRotationRunsQueryWire = {}): Promise<RotationRunListWire> {
    return this.#call('GET', '/v1/rotations', { query: query as Query });
  }
  getRotation(id: string): Promise<RotationRunDetailWire> {
    return this.#call('GET', `/v1/rotations/${encodeURIComponent(id)}`);
  }
  /** Undoes a run that ended done while its old credential is not yet revoked. */
  rollbackRotation(id: string): Promise<RotationRunDetailWire> {
    return this.#call('POST', `/v1/rotations/${encodeURIComponent(id)}/rollback`, { body: {} });
  }
  rotationStats(): Promise<RotationStatsWire> {
    return this.#call('GET', '/v1/rotation/stats');
  }

  /**
   * Server-sent events from `GET /v1/events` as an async iterator of parsed events. A dropped
   * connection (a restart, a proxy timeout) is retried with `Last-Event-ID`, so the iteration
   * sees every event once and in order across reconnects. A refusal (401, 403, 400) throws
   * KeysmithApiError; a server that cannot be reached at all on the first attempt throws
   * KeysmithConnectionError. Breaking out of the loop or aborting `signal` closes the stream.
   */
  async *events(options: EventsOptions = {}): AsyncGenerator<StreamEventWire, void, undefined> {
    const abort = new AbortController();
    const onAbort = () => abort.abort();
    if (options.signal?.aborted) return;
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const url = new URL(`${this.addr}/v1/events`);
    if (options.types !== undefined) url.searchParams.set('types', options.types.join(','));
    if (options.target !== undefined) url.searchParams.set('target', options.target);
    const baseDelay = options.retryMs ?? 1_000;
    let lastId = options.since === undefined ? undefined : String(options.since);
    let delay = baseDelay;
    let connected = false;
    try {
      for (;;) {
        const headers: Record<string, string> = { accept: 'text/event-stream', 'user-agent': this.#userAgent, 'cache-control': 'no-cache' };
        if (this.#token) headers.authorization = `Bearer ${this.#token}`;
        if (lastId !== undefined) headers['last-event-id'] = lastId;
        let response: Response | undefined;
        try {
          response = await this.#fetch(url, { method: 'GET', headers, signal: abort.signal });
        } catch (error) {
          if (abort.signal.aborted) return;
          if (!connected || options.reconnect === false) throw new KeysmithConnectionError(this.addr, error);
        }
        if (response !== undefined && !response.ok) {
          const problem = await problemOf(response);
          // A closing or overloaded server is worth another try once a stream has worked; a refusal is not.
          if (response.status < 500 || !connected || options.reconnect === false) throw new KeysmithApiError(problem);
        } else if (response?.body) {
          connected = true;
          delay = baseDelay;
          const parser = new SseParser(lastId);
          const reader = response.body.getReader();
          const decoder = new TextDecoder();
          try {
            for (;;) {
              const { done, value } = await reader.read();
              if (done) break;
              for (const message of parser.push(decoder.decode(value, { stream: true }))) {
                lastId = message.id;
                if (message.dispatch) yield JSON.parse(message.data) as StreamEventWire;
              }
            }
          } catch (error) {
            if (abort.signal.aborted) return;
            // A dropped connection: reconnect below.
            void error;
          } finally {
            reader.cancel().catch(() => undefined);
          }
          if (parser.retryMs !== undefined) delay = parser.retryMs;
        }
        if (abort.signal.aborted || options.reconnect === false) return;
        await sleep(delay, abort.signal);
        if (abort.signal.aborted) return;
        delay = Math.min(delay * 2, MAX_RETRY_MS);
      }
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      abort.abort();
    }
  }

  /** The plan of a mass revocation or rotation: nothing changes. */
  planIncident(body: Omit<CreateIncidentBodyWire, 'dryRun'>): Promise<IncidentPlanWire> {
    return this.#call('POST', '/v1/incidents', { body: { ...body, dryRun: true } });
  }
  /** Revokes or rotates every key the selector picks; for rotate the new keys are in the answer, once. */
  createIncident(body: Omit<CreateIncidentBodyWire, 'dryRun'>): Promise<IncidentResultWire> {
    return this.#call('POST', '/v1/incidents', { body });
  }
  listIncidents(query: ListIncidentsQueryWire = {}): Promise<IncidentPageWire> {
    return this.#call('GET', '/v1/incidents', { query: query as Query });
  }
  getIncident(id: string): Promise<IncidentRecordWire> {
    return this.#call('GET', `/v1/incidents/${encodeURIComponent(id)}`);
  }

  async #call<T>(method: string, path: string, options: { body?: unknown; query?: Query } = {}): Promise<T> {
    const url = new URL(this.addr + path);
    for (const [name, value] of Object.entries(options.query ?? {})) {
      if (value === undefined) continue;
      if (Array.isArray(value)) for (const item of value) url.searchParams.append(name, String(item));
      else url.searchParams.set(name, String(value));
    }
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': this.#userAgent };
    if (this.#token) headers.authorization = `Bearer ${this.#token}`;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await this.#fetch(url, {
        method,
        headers,
        ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
      });
    } catch (error) {
      throw new KeysmithConnectionError(this.addr, error);
    }
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (!response.ok) {
      const problem = (parsed && typeof parsed === 'object' ? parsed : {}) as Partial<ProblemWire>;
      throw new KeysmithApiError({ ...problem, status: response.status });
    }
    return parsed as T;
  }
}

async function problemOf(response: Response): Promise<ProblemWire> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await response.text());
  } catch {
    parsed = undefined;
  }
  return { ...(parsed && typeof parsed === 'object' ? (parsed as Partial<ProblemWire>) : {}), status: response.status };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
