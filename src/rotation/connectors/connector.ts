/**
 * The connector interface: the four steps a rotation run asks of the world outside Keysmith.
 * A run calls create (a new credential, idempotent on the run id) → set (apply it where it
 * is used) → test (prove it works) → … → revoke (retire the old one). Connectors never log a
 * credential or an admin secret, and their errors and evidence never carry one.
 */
import { AppError, type ErrorCode } from '../../shared/errors.js';

export type ConnectorStep = 'create' | 'set' | 'test' | 'revoke';

/** A credential value: an opaque string (API key) or a structured one (`{ username, password }`). */
export type CredentialValue = string | Readonly<Record<string, unknown>>;

export interface ConnectorContext {
  /** Idempotency key: create() called again with the same runId must not make a second credential. */
  readonly runId: string;
  /** The policy's connector settings, already accepted by validateSettings. */
  readonly settings: Readonly<Record<string, unknown>>;
  /**
   * The credential now in use (the vault's current version), when there is one. Connectors
   * that alternate between two accounts (postgres) pick the idle one from it, and refuse to
   * revoke it.
   */
  readonly current?: Credential;
  /** The policy's overlap (a duration), for connectors that keep the old credential valid themselves. */
  readonly overlap?: string;
  /** Reads a vault value (admin credentials); the connector never logs it. */
  readonly readSecret: (path: string) => Promise<CredentialValue>;
  /** Cancels the step (the run is being stopped); the connector gives up promptly. */
  readonly signal?: AbortSignal;
}

export interface Credential {
  readonly value: CredentialValue;
  /** The vendor's own id for the credential (needed to revoke it), when it has one. */
  readonly vendorId?: string;
}

/** What a step did, for the run record and audit: never a secret. */
export interface StepEvidence {
  readonly [field: string]: string | number | boolean | null;
}

export interface CreateResult {
  readonly credential: Credential;
  readonly evidence: StepEvidence;
}

/** A failed test is an outcome, not an exception: `ok: false` lets the run roll back. */
export interface TestResult {
  readonly ok: boolean;
  readonly evidence: StepEvidence;
}

/** What revoke needs of the old credential: its vendor id, its value, or both. */
export interface RevokeTarget {
  readonly vendorId?: string;
  readonly value?: CredentialValue;
}

export interface Connector {
  readonly type: string;
  /** Problems with the settings, each naming its field; empty when they are usable. */
  validateSettings(settings: unknown): string[];
  create(ctx: ConnectorContext): Promise<CreateResult>;
  set(ctx: ConnectorContext, credential: Credential): Promise<StepEvidence>;
  test(ctx: ConnectorContext, credential: Credential): Promise<TestResult>;
  revoke(ctx: ConnectorContext, old: RevokeTarget): Promise<StepEvidence>;
}

export type ConnectorErrorCode = Extract<ErrorCode, `ERR_CONNECTOR_${string}`>;

export interface ConnectorErrorOptions {
  readonly connector: string;
  readonly step?: ConnectorStep;
  /** True when trying the same step again later may succeed (5xx, timeouts, network). */
  readonly retryable: boolean;
  readonly cause?: unknown;
}

/**
 * A connector step that did not happen. The message names the connector and the step and has
 * already been scrubbed of every secret the connector knew about.
 */
export class ConnectorError extends AppError {
  override readonly code: ConnectorErrorCode;
  readonly connector: string;
  readonly step: ConnectorStep | undefined;
  readonly retryable: boolean;

  constructor(code: ConnectorErrorCode, message: string, options: ConnectorErrorOptions) {
    super(code, message, options.cause === undefined ? {} : { cause: options.cause });
    this.name = 'ConnectorError';
    this.code = code;
    this.connector = options.connector;
    this.step = options.step;
    this.retryable = options.retryable;
  }
}

export function isConnectorError(value: unknown): value is ConnectorError {
  return value instanceof ConnectorError;
}

/** Secret strings shorter than this are not scrubbed: they would mangle ordinary text. */
const MIN_SCRUB_LENGTH = 4;

/** Every string inside a value (objects and arrays, a few levels deep). */
export function stringsWithin(...values: unknown[]): Set<string> {
  const out = new Set<string>();
  const walk = (value: unknown, depth: number): void => {
    if (depth > 8) return;
    if (typeof value === 'string') out.add(value);
    else if (Array.isArray(value)) {
      for (const item of value) walk(item, depth + 1);
    } else if (value !== null && typeof value === 'object') {
      for (const item of Object.values(value)) walk(item, depth + 1);
    }
  };
  for (const value of values) walk(value, 0);
  return out;
}

/** Every string inside a credential value or vault value, for scrubbing. */
export function secretStrings(...values: (CredentialValue | undefined)[]): string[] {
  // Longest first, so a secret that contains another is replaced whole.
  return [...stringsWithin(...values)].filter((text) => text.length >= MIN_SCRUB_LENGTH).sort((a, b) => b.length - a.length);
}

/** Below this length a value is not looked for across whitespace: too many words would match. */
const MIN_SPLIT_SCRUB_LENGTH = 8;

/** A secret as a program or vendor may print it: as it is, URL- and JSON-encoded, base64 (padded or not, URL-safe) and hex. */
function encodedForms(secret: string): Set<string> {
  const bytes = Buffer.from(secret, 'utf8');
  const base64 = bytes.toString('base64');
  const hex = bytes.toString('hex');
  // Padded base64 before unpadded, so the padding goes with it.
  return new Set([secret, encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1), base64, base64.replace(/=+$/, ''), bytes.toString('base64url'), hex, hex.toUpperCase()]);
}

/**
 * Replaces each secret (and its encoded forms) with `[redacted]`. A text that still holds one
 * once whitespace is taken out (a value split across lines or spaced out) is withheld whole.
 */
export function scrub(text: string, secrets: readonly string[]): string {
  let result = text;
  const split: string[] = [];
  for (const secret of secrets) {
    for (const form of encodedForms(secret)) {
      if (form.length >= MIN_SCRUB_LENGTH) result = result.split(form).join('[redacted]');
      const squeezed = form.replace(/\s+/g, '');
      if (squeezed.length >= MIN_SPLIT_SCRUB_LENGTH) split.push(squeezed);
    }
  }
  if (split.length > 0) {
    const squeezedText = result.replace(/\s+/g, '');
    if (split.some((form) => squeezedText.includes(form))) return '[withheld: it held a value the run read, split up]';
  }
  return result;
}

/**
 * Keeps only flat primitive fields of untrusted evidence (from a program or a vendor) and
 * scrubs every string, so a careless script cannot put a secret into the run record.
 */
export function sanitizeEvidence(raw: unknown, secrets: readonly string[]): StepEvidence {
  const out: Record<string, string | number | boolean | null> = {};
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return out;
  for (const [field, value] of Object.entries(raw).slice(0, 32)) {
    if (typeof value === 'string') out[field] = scrub(value.slice(0, 500), secrets);
    else if (typeof value === 'number' || typeof value === 'boolean' || value === null) out[field] = value;
  }
  return out;
}

/** Evidence as one line, `name=value …`, for a message or a table cell. */
export function evidenceText(evidence: Readonly<Record<string, unknown>>): string {
  return Object.entries(evidence)
    .map(([name, value]) => `${name}=${String(value)}`)
    .join(' ');
}

/** The last `max` characters of text, marked when cut. */
export function tail(text: string, max = 500): string {
  const trimmed = text.trim();
  return trimmed.length > max ? `…${trimmed.slice(-max)}` : trimmed;
}
