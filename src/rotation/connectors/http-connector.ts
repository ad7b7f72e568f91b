/**
 * The `http` connector: a declarative template for the SaaS pattern, where the vendor lets two
 * keys be active at once so the old one keeps working through the overlap.
 *
 *   adminSecret: vendors/acme/admin          # vault path of the admin token
 *   adminField: token                        # only when that vault value is an object
 *   timeout: 10s                             # per request (default 10s)
 *   create: { method: POST, url: "https://api.acme.com/keys",
 *             headers: { Authorization: "Bearer {{admin}}" }, body: { name: "keysmith-{{runId}}" },
 *             key: "$.secret", id: "$.id" }
 *   set:    { … }                            # optional: most vendors need nothing here
 *   test:   { method: GET, url: "https://api.acme.com/me", headers: { Authorization: "Bearer {{key}}" }, expect: 200 }
 *   revoke: { method: DELETE, url: "https://api.acme.com/keys/{{vendorId}}", headers: { Authorization: "Bearer {{admin}}" } }
 *
 * Placeholders: {{admin}} (the admin secret), {{key}} (the credential value: the new key in
 * set/test, the old one in revoke), {{vendorId}} (likewise) and {{runId}}. In a URL they are
 * percent-encoded. Create sends `Idempotency-Key: <runId>` (header name configurable with
 * `idempotencyHeader`, or `false` for a vendor that refuses unknown headers), so a create
 * retried after a lost answer gets the same key back from a vendor that honours it.
 *
 * Outcomes: 408, 429, 5xx, network failures and timeouts are retryable errors; other refusals
 * (a third key over the vendor's limit, a bad admin token) are ERR_CONNECTOR_REJECTED and not
 * retryable. A test answered with an unexpected status is `ok: false`, not an error. A revoke
 * answered 404 or 410 counts as done (the key is already gone). Redirects are not followed (a 3xx
 * is a refusal), so the admin token is sent to the configured host only; URLs must be https
 * (http only to loopback). Every host must be in the server's egress allowlist: checked when the
 * policy is put, and again on the address actually connected to (see src/outbound); a refused
 * host is an ERR_CONNECTOR_EGRESS_REFUSED that names the host and is not retried.
 */
import { EgressRefusedError, OutboundNetworkError, egressRequest, type Egress } from '../../outbound/index.js';
import { tryParseDuration } from '../../shared/duration.js';
import {
  ConnectorError,
  secretStrings,
  tail,
  type Connector,
  type ConnectorContext,
  type ConnectorErrorCode,
  type ConnectorStep,
  type CreateResult,
  type Credential,
  type CredentialValue,
  type RevokeTarget,
  type StepEvidence,
  type TestResult,
} from './connector.js';
import { scrubText } from '../failure.js';

export interface HttpRequestTemplate {
  readonly method?: string;
  readonly url: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: unknown;
  /** Statuses that mean success; default any 2xx. */
  readonly expect?: number | readonly number[];
}

export interface HttpCreateTemplate extends HttpRequestTemplate {
  /** Where the new key is in the JSON answer, as `$.secret` or `$.data.key`. */
  readonly key: string;
  /** Where the vendor's id for the key is, as `$.id`. */
  readonly id?: string;
}

export interface HttpSettings {
  readonly adminSecret?: string;
  readonly adminField?: string;
  readonly timeout?: string;
  readonly idempotencyHeader?: string | false;
  readonly create: HttpCreateTemplate;
  readonly set?: HttpRequestTemplate;
  readonly test: HttpRequestTemplate;
  readonly revoke: HttpRequestTemplate;
}

export const DEFAULT_HTTP_TIMEOUT_MS = 10_000;
const PLACEHOLDER_RE = /\{\{\s*([A-Za-z]+)\s*\}\}/g;
const PLACEHOLDERS = ['admin', 'key', 'vendorId', 'runId'] as const;
type Placeholder = (typeof PLACEHOLDERS)[number];
const JSON_PATH_RE = /^\$(\.[A-Za-z0-9_-]+)+$/;
const METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']);
const MAX_ANSWER_CHARS = 1024 * 1024;

/** Which placeholders a step may use: create has no key yet. */
const STEP_PLACEHOLDERS: Record<ConnectorStep, readonly Placeholder[]> = {
  create: ['admin', 'runId'],
  set: PLACEHOLDERS,
  test: PLACEHOLDERS,
  revoke: PLACEHOLDERS,
};

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function placeholdersIn(value: unknown, found: Set<string> = new Set()): Set<string> {
  if (typeof value === 'string') for (const m of value.matchAll(PLACEHOLDER_RE)) found.add(m[1]!);
  else if (Array.isArray(value)) for (const item of value) placeholdersIn(item, found);
  else if (isObject(value)) for (const item of Object.values(value)) placeholdersIn(item, found);
  return found;
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/**
 * The host a URL template names with every placeholder filled by `fill`. Compared for two fills:
 * the parser's own answer, so no spelling (`https:\\{{key}}.x`, `https:/{{key}}.x`) hides a
 * placeholder in the host from a text pattern.
 */
function hostOf(template: string, fill: string): string | undefined {
  try {
    return new URL(template.replace(PLACEHOLDER_RE, fill)).host;
  } catch {
    return undefined;
  }
}

function validateTemplate(step: ConnectorStep, template: unknown, problems: string[], egress: Egress | undefined): void {
  if (!isObject(template)) {
    problems.push(`${step} must be a request: { method, url, headers?, body? }`);
    return;
  }
  const known = new Set(['method', 'url', 'headers', 'body', 'expect', ...(step === 'create' ? ['key', 'id'] : [])]);
  for (const field of Object.keys(template)) if (!known.has(field)) problems.push(`${step}.${field} is not a request field`);
  if (template.method !== undefined && (typeof template.method !== 'string' || !METHODS.has(template.method.toUpperCase()))) {
    problems.push(`${step}.method must be one of ${[...METHODS].join(', ')}`);
  }
  if (typeof template.url !== 'string') {
    problems.push(`${step}.url must be a string`);
  } else {
    let url: URL | undefined;
    try {
      url = new URL(template.url.replace(PLACEHOLDER_RE, 'x'));
    } catch {
      problems.push(`${step}.url is not a URL`);
    }
    const before = problems.length;
    if (url && url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname))) {
      problems.push(`${step}.url must be https (plain http only to a loopback address)`);
    }
    if (url && hostOf(template.url, 'x') !== hostOf(template.url, 'y')) {
      problems.push(`${step}.url may not put a placeholder in the host`);
    } else if (url && egress && problems.length === before) {
      const refused = egress.checkUrl(url.href);
      if (refused !== undefined) problems.push(`${step}.url: ${refused}`);
    }
  }
  if (template.headers !== undefined && (!isObject(template.headers) || Object.values(template.headers).some((v) => typeof v !== 'string'))) {
    problems.push(`${step}.headers must map names to strings`);
  }
  const expect = template.expect;
  const statuses = expect === undefined ? [] : Array.isArray(expect) ? expect : [expect];
  if (statuses.some((s) => !Number.isInteger(s) || (s as number) < 100 || (s as number) > 599)) {
    problems.push(`${step}.expect must be an HTTP status or a list of them`);
  }
  for (const name of placeholdersIn([template.url, template.headers, template.body])) {
    if (!(PLACEHOLDERS as readonly string[]).includes(name)) problems.push(`${step}: unknown placeholder {{${name}}}`);
    else if (!STEP_PLACEHOLDERS[step].includes(name as Placeholder)) problems.push(`${step}: {{${name}}} is not known at this step`);
  }
  if (step === 'create') {
    if (typeof template.key !== 'string' || !JSON_PATH_RE.test(template.key)) problems.push('create.key must be a path such as $.secret');
    if (template.id !== undefined && (typeof template.id !== 'string' || !JSON_PATH_RE.test(template.id))) {
      problems.push('create.id must be a path such as $.id');
    }
  }
}

/** The settings' problems; with an egress allowlist, also every URL whose host it does not list. */
export function validateHttpSettings(settings: unknown, egress?: Egress): string[] {
  if (!isObject(settings)) return ['settings must be an object'];
  const problems: string[] = [];
  const known = new Set(['adminSecret', 'adminField', 'timeout', 'idempotencyHeader', 'create', 'set', 'test', 'revoke']);
  for (const field of Object.keys(settings)) if (!known.has(field)) problems.push(`${field} is not an http connector setting`);
  if (settings.adminSecret !== undefined && (typeof settings.adminSecret !== 'string' || settings.adminSecret === '')) {
    problems.push('adminSecret must be a vault path');
  }
  if (settings.adminField !== undefined && typeof settings.adminField !== 'string') problems.push('adminField must be a string');
  if (settings.timeout !== undefined && (typeof settings.timeout !== 'string' || tryParseDuration(settings.timeout) === undefined)) {
    problems.push('timeout must be a duration such as 10s');
  }
  const idem = settings.idempotencyHeader;
  if (idem !== undefined && idem !== false && (typeof idem !== 'string' || !/^[A-Za-z0-9-]+$/.test(idem))) {
    problems.push('idempotencyHeader must be a header name or false');
  }
  for (const step of ['create', 'test', 'revoke'] as const) validateTemplate(step, settings[step], problems, egress);
  if (settings.set !== undefined) validateTemplate('set', settings.set, problems, egress);
  const usesAdmin = placeholdersIn([settings.create, settings.set, settings.test, settings.revoke]).has('admin');
  if (usesAdmin && typeof settings.adminSecret !== 'string') problems.push('adminSecret is required when a request uses {{admin}}');
  return problems;
}

/** Reads `$.a.b.0` out of a parsed JSON answer. */
function extract(answer: unknown, path: string): unknown {
  let value = answer;
  for (const part of path.split('.').slice(1)) {
    if (Array.isArray(value) && /^\d+$/.test(part)) value = value[Number(part)];
    else if (isObject(value)) value = value[part];
    else return undefined;
  }
  return value;
}

type Values = Partial<Record<Placeholder, string>>;

interface Answer {
  readonly status: number;
  readonly json: unknown;
  readonly text: string;
  readonly durationMs: number;
  /** The URL with secrets replaced, for evidence. */
  readonly shownUrl: string;
}

export interface HttpConnectorDeps {
  /** The egress allowlist; without it settings are checked for shape only and every call is refused. */
  readonly egress?: Egress;
}

export class HttpConnector implements Connector {
  readonly type = 'http';
  readonly #egress: Egress | undefined;

  constructor(deps: HttpConnectorDeps = {}) {
    this.#egress = deps.egress;
  }

  validateSettings(settings: unknown): string[] {
    return validateHttpSettings(settings, this.#egress);
  }

  async create(ctx: ConnectorContext): Promise<CreateResult> {
    const settings = this.settings(ctx, 'create');
    const values: Values = { runId: ctx.runId, ...(await this.admin(ctx, settings, 'create')) };
    const headers: Record<string, string> = {};
    if (settings.idempotencyHeader !== false) headers[settings.idempotencyHeader ?? 'Idempotency-Key'] = ctx.runId;
    const answer = await this.send(ctx, settings, 'create', settings.create, values, headers);
    this.requireSuccess('create', settings.create, answer, values);
    const key = extract(answer.json, settings.create.key);
    if (typeof key !== 'string' || key === '') {
      throw this.error('ERR_CONNECTOR_BAD_RESPONSE', 'create', `the answer (status ${answer.status}) has no string at ${settings.create.key}`, false);
    }
    let vendorId: string | undefined;
    if (settings.create.id) {
      const id = extract(answer.json, settings.create.id);
      if (typeof id !== 'string' && typeof id !== 'number') {
        throw this.error('ERR_CONNECTOR_BAD_RESPONSE', 'create', `the answer (status ${answer.status}) has no id at ${settings.create.id}`, false);
      }
      vendorId = String(id);
    }
    const credential: Credential = vendorId === undefined ? { value: key } : { value: key, vendorId };
    return { credential, evidence: { ...this.evidence(answer), vendorId: vendorId ?? null } };
  }

  async set(ctx: ConnectorContext, credential: Credential): Promise<StepEvidence> {
    const settings = this.settings(ctx, 'set');
    if (!settings.set) return { skipped: true, reason: 'no set request configured: the vendor holds the key' };
    const values = await this.credentialValues(ctx, settings, 'set', credential);
    const answer = await this.send(ctx, settings, 'set', settings.set, values);
    this.requireSuccess('set', settings.set, answer, values);
    return this.evidence(answer);
  }

  async test(ctx: ConnectorContext, credential: Credential): Promise<TestResult> {
    const settings = this.settings(ctx, 'test');
    const values = await this.credentialValues(ctx, settings, 'test', credential);
    const answer = await this.send(ctx, settings, 'test', settings.test, values);
    if (this.expected(settings.test, answer.status)) return { ok: true, evidence: this.evidence(answer) };
    if (isTransient(answer.status)) throw this.refusal('test', answer, values);
    return { ok: false, evidence: this.evidence(answer) };
  }

  async revoke(ctx: ConnectorContext, old: RevokeTarget): Promise<StepEvidence> {
    const settings = this.settings(ctx, 'revoke');
    const values = await this.credentialValues(ctx, settings, 'revoke', old);
    const answer = await this.send(ctx, settings, 'revoke', settings.revoke, values);
    if (!this.expected(settings.revoke, answer.status) && (answer.status === 404 || answer.status === 410)) {
      return { ...this.evidence(answer), alreadyGone: true };
    }
    this.requireSuccess('revoke', settings.revoke, answer, values);
    return { ...this.evidence(answer), vendorId: old.vendorId ?? null };
  }

  private settings(ctx: ConnectorContext, step: ConnectorStep): HttpSettings {
    const problems = validateHttpSettings(ctx.settings);
    if (problems.length > 0) {
      throw new ConnectorError('ERR_CONNECTOR_SETTINGS_INVALID', `http connector: ${problems.join('; ')}`, {
        connector: this.type,
        step,
        retryable: false,
      });
    }
    return ctx.settings as unknown as HttpSettings;
  }

  private async admin(ctx: ConnectorContext, settings: HttpSettings, step: ConnectorStep): Promise<Values> {
    const template = settings[step];
    if (!template || !placeholdersIn([template.url, template.headers, template.body]).has('admin')) return {};
    const secret = await ctx.readSecret(settings.adminSecret!);
    if (typeof secret === 'string') return { admin: secret };
    const field = settings.adminField;
    const value = field === undefined ? undefined : secret[field];
    if (typeof value !== 'string') {
      throw this.error('ERR_CONNECTOR_SETTINGS_INVALID', step, `the admin secret is an object: set adminField to the field holding the token`, false);
    }
    return { admin: value };
  }

  private async credentialValues(ctx: ConnectorContext, settings: HttpSettings, step: ConnectorStep, credential: RevokeTarget): Promise<Values> {
    const values: Values = { runId: ctx.runId, ...(await this.admin(ctx, settings, step)) };
    if (typeof credential.value === 'string') values.key = credential.value;
    if (credential.vendorId !== undefined) values.vendorId = credential.vendorId;
    return values;
  }

  private render(step: ConnectorStep, text: string, values: Values, encode: (v: string) => string): string {
    return text.replace(PLACEHOLDER_RE, (_, name: string) => {
      const value = values[name as Placeholder];
      if (value === undefined) {
        const what = name === 'key' ? 'the credential value as a string' : name === 'vendorId' ? "the credential's vendor id" : name;
        throw this.error('ERR_CONNECTOR_FAILED', step, `the request needs ${what}, which this step was not given`, false);
      }
      return encode(value);
    });
  }

  private renderBody(step: ConnectorStep, body: unknown, values: Values): unknown {
    if (typeof body === 'string') return this.render(step, body, values, (v) => v);
    if (Array.isArray(body)) return body.map((item) => this.renderBody(step, item, values));
    if (isObject(body)) return Object.fromEntries(Object.entries(body).map(([k, v]) => [k, this.renderBody(step, v, values)]));
    return body;
  }

  private async send(
    ctx: ConnectorContext,
    settings: HttpSettings,
    step: ConnectorStep,
    template: HttpRequestTemplate,
    values: Values,
    extraHeaders: Record<string, string> = {},
  ): Promise<Answer> {
    const url = this.render(step, template.url, values, encodeURIComponent);
    const shownUrl = this.render(step, template.url, { runId: values.runId, vendorId: values.vendorId, key: '[key]', admin: '[admin]' }, encodeURIComponent);
    const headers: Record<string, string> = { accept: 'application/json', ...extraHeaders };
    for (const [name, value] of Object.entries(template.headers ?? {})) {
      const rendered = this.render(step, value, values, (v) => v);
      if (/[\r\n]/.test(rendered)) throw this.error('ERR_CONNECTOR_FAILED', step, `header ${name} would contain a line break`, false);
      headers[name] = rendered;
    }
    let body: string | undefined;
    if (template.body !== undefined) {
      body = JSON.stringify(this.renderBody(step, template.body, values));
      headers['content-type'] = 'application/json';
    }
    const timeoutMs = settings.timeout ? tryParseDuration(settings.timeout)! : DEFAULT_HTTP_TIMEOUT_MS;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = ctx.signal ? AbortSignal.any([ctx.signal, timeout]) : timeout;
    const method = (template.method ?? (step === 'test' ? 'GET' : 'POST')).toUpperCase();
    const started = performance.now();
    try {
      if (!this.#egress) throw new EgressRefusedError(new URL(url).hostname, 'no egress is configured');
      const response = await egressRequest(this.#egress, url, { method, headers, ...(body !== undefined ? { body } : {}), signal, maxBytes: MAX_ANSWER_CHARS });
      const text = response.text.slice(0, MAX_ANSWER_CHARS);
      let json: unknown;
      try {
        json = text === '' ? undefined : JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: response.status, json, text, durationMs: Math.round(performance.now() - started), shownUrl };
    } catch (error) {
      const where = `${method} ${shownUrl}`;
      // Names the host and the rule that refused it, never the URL (its path may hold a secret).
      if (error instanceof EgressRefusedError) throw this.error('ERR_CONNECTOR_EGRESS_REFUSED', step, error.message, false);
      // The fetch error itself is not kept as the cause: its text may quote the URL.
      if (timeout.aborted) throw this.error('ERR_CONNECTOR_TIMEOUT', step, `${where} did not answer within ${timeoutMs} ms`, true);
      if (ctx.signal?.aborted) throw this.error('ERR_CONNECTOR_FAILED', step, `${where} was cancelled`, true);
      const code = error instanceof OutboundNetworkError ? error.code : undefined;
      throw this.error('ERR_CONNECTOR_FAILED', step, `${where} failed: ${code ?? 'network error'}`, true);
    }
  }

  private expected(template: HttpRequestTemplate, status: number): boolean {
    if (template.expect === undefined) return status >= 200 && status < 300;
    return (Array.isArray(template.expect) ? template.expect : [template.expect]).includes(status);
  }

  private requireSuccess(step: ConnectorStep, template: HttpRequestTemplate, answer: Answer, values: Values): void {
    if (!this.expected(template, answer.status)) throw this.refusal(step, answer, values);
  }

  private refusal(step: ConnectorStep, answer: Answer, values: Values): ConnectorError {
    const secrets = secretStrings(...(Object.entries(values).filter(([k]) => k === 'admin' || k === 'key').map(([, v]) => v) as CredentialValue[]));
    // A success answer the template did not expect may hold a new key: never quote one.
    const quotable = answer.status < 200 || answer.status >= 300;
    const said = quotable ? tail(scrubText(answer.text, secrets).replace(/\s+/g, ' '), 300) : '';
    const message = `${answer.shownUrl} answered ${answer.status}${said ? `: ${said}` : ''}`;
    const retryable = isTransient(answer.status);
    return this.error(retryable ? 'ERR_CONNECTOR_FAILED' : 'ERR_CONNECTOR_REJECTED', step, message, retryable);
  }

  private evidence(answer: Answer): Record<string, string | number | boolean | null> {
    return { url: answer.shownUrl, status: answer.status, durationMs: answer.durationMs };
  }

  private error(code: ConnectorErrorCode, step: ConnectorStep, message: string, retryable: boolean): ConnectorError {
    return new ConnectorError(code, `http connector, ${step}: ${message}`, { connector: this.type, step, retryable });
  }
}

function isTransient(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}
