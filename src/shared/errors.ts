/**
 * The one registry of error codes. A code never changes meaning; `docs/errors.md` lists the
 * same codes and a test keeps the two in step. The server turns an AppError into RFC 9457
 * problem+json in one place; messages must never carry a key or secret value.
 */

export type ProblemCategory =
  | 'invalid_request'
  | 'unauthenticated'
  | 'forbidden'
  | 'not_found'
  | 'conflict'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'rate_limited'
  | 'policy_violation'
  | 'internal';

export interface ErrorSpec {
  readonly status: number;
  readonly category: ProblemCategory;
  readonly title: string;
}

export const ERROR_REGISTRY = {
  ERR_INVALID_REQUEST: { status: 400, category: 'invalid_request', title: 'The request is not valid' },
  ERR_INVALID_JSON: { status: 400, category: 'invalid_request', title: 'The request body is not valid JSON' },
  ERR_JSON_TOO_DEEP: { status: 400, category: 'invalid_request', title: 'The request body is nested too deeply' },
  ERR_INVALID_DURATION: { status: 400, category: 'invalid_request', title: 'The duration is not valid' },
  ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, category: 'unsupported_media_type', title: 'The request body must be application/json' },
  ERR_PAYLOAD_TOO_LARGE: { status: 413, category: 'payload_too_large', title: 'The request body is too large' },
  ERR_UNAUTHENTICATED: { status: 401, category: 'unauthenticated', title: 'Authentication is required' },
  ERR_FORBIDDEN: { status: 403, category: 'forbidden', title: 'The token may not do this' },
  ERR_RATE_LIMITED: { status: 429, category: 'rate_limited', title: 'Too many requests; try again after Retry-After' },
  ERR_ROUTE_NOT_FOUND: { status: 404, category: 'not_found', title: 'No such route' },
  ERR_METHOD_NOT_ALLOWED: { status: 405, category: 'invalid_request', title: 'Method not allowed on this route' },
  ERR_KEY_NOT_FOUND: { status: 404, category: 'not_found', title: 'No such key' },
  ERR_KEY_REVOKED: { status: 409, category: 'conflict', title: 'The key is revoked' },
  ERR_KEY_SUPERSEDED: { status: 409, category: 'conflict', title: 'The key has already been rotated' },
  ERR_KEY_NOT_SUPERSEDED: { status: 409, category: 'conflict', title: 'The key is not in a rotation overlap' },
  ERR_KEY_RETIRED: { status: 409, category: 'conflict', title: 'The key is retired' },
  ERR_KEY_NOT_RETIRABLE: { status: 409, category: 'conflict', title: 'Only a revoked or expired key can be retired' },
  ERR_KEY_EXPIRED: { status: 409, category: 'conflict', title: 'The key has expired' },
  ERR_KEY_DISABLED: { status: 409, category: 'conflict', title: 'The key is disabled' },
  ERR_SCOPE_WIDENING: { status: 422, category: 'policy_violation', title: 'Scopes can only be narrowed' },
  ERR_TTL_TOO_LONG: { status: 422, category: 'policy_violation', title: 'The expiry is past the allowed maximum' },
  ERR_SCOPE_ESCALATION: { status: 403, category: 'forbidden', title: 'A token cannot grant scopes it does not hold' },
  ERR_ALLOWLIST_ESCALATION: { status: 403, category: 'forbidden', title: 'A token cannot allow addresses its own allowlist does not' },
  ERR_SECRET_PATH_INVALID: { status: 400, category: 'invalid_request', title: 'The secret path is not valid' },
  ERR_SECRET_NOT_FOUND: { status: 404, category: 'not_found', title: 'No such secret' },
  ERR_SECRET_SCHEDULED_FOR_DELETION: { status: 404, category: 'not_found', title: 'The secret is scheduled for deletion' },
  ERR_SECRET_VERSION_NOT_FOUND: { status: 404, category: 'not_found', title: 'No such secret version' },
  ERR_SECRET_VERSION_DESTROYED: { status: 404, category: 'not_found', title: 'The secret version has been destroyed' },
  ERR_SECRET_CAS_MISMATCH: { status: 409, category: 'conflict', title: 'The secret has changed since the version given in cas' },
  ERR_SECRET_REQUEST_TOKEN_REUSED: { status: 409, category: 'conflict', title: 'The request token was used with another value' },
  ERR_SECRET_NO_PENDING: { status: 409, category: 'conflict', title: 'The secret has no pending version' },
  ERR_SECRET_NO_PREVIOUS: { status: 409, category: 'conflict', title: 'The secret has no previous version' },
  ERR_SECRET_NOT_DELETED: { status: 409, category: 'conflict', title: 'The secret is not scheduled for deletion' },
  ERR_SECRET_VERSION_IS_CURRENT: { status: 409, category: 'conflict', title: 'The current version cannot be destroyed' },
  ERR_SECRET_STAGE_RESERVED: { status: 400, category: 'invalid_request', title: 'The stage is moved by put, promote and rollback only' },
  ERR_SECRET_TOO_MANY_STAGES: { status: 422, category: 'policy_violation', title: 'The secret has too many custom stages' },
  ERR_SECRET_VALUE_TOO_LARGE: { status: 413, category: 'payload_too_large', title: 'The secret value is too large' },
  ERR_KEK_VERSION_NOT_FOUND: { status: 404, category: 'not_found', title: 'No such key-encryption key version' },
  ERR_KEK_VERSION_IN_USE: { status: 409, category: 'conflict', title: 'Data keys are still wrapped under this key-encryption key version' },
  ERR_KEK_VERSION_CURRENT: { status: 409, category: 'conflict', title: 'The current key-encryption key version cannot be retired' },
  ERR_AUDIT_CHECKPOINT_REFUSED: { status: 409, category: 'conflict', title: 'The audit head cannot be checkpointed: the log is empty or its head does not match its events' },
  ERR_ROTATION_POLICY_NOT_FOUND: { status: 404, category: 'not_found', title: 'No such rotation policy' },
  ERR_ROTATION_POLICY_INVALID: { status: 422, category: 'policy_violation', title: 'The rotation policy is unsafe or inconsistent' },
  ERR_ROTATION_POLICY_NAME_MISMATCH: { status: 400, category: 'invalid_request', title: 'The policy name differs from the name in the URL' },
  ERR_ROTATION_POLICY_VERSION_MISMATCH: { status: 409, category: 'conflict', title: 'The rotation policy has changed since the version given' },
  ERR_ROTATION_RUN_NOT_FOUND: { status: 404, category: 'not_found', title: 'No such rotation run' },
  ERR_ROTATION_IN_PROGRESS: { status: 409, category: 'conflict', title: 'A rotation of this target is already running' },
  ERR_ROTATION_NO_POLICY: { status: 422, category: 'policy_violation', title: 'No rotation policy covers the target' },
  ERR_ROTATION_TARGET_INVALID: { status: 409, category: 'conflict', title: 'The target cannot be rotated in its present state' },
  ERR_ROTATION_ROLLBACK_CLOSED: { status: 409, category: 'conflict', title: 'The run can no longer be rolled back' },
  ERR_CONNECTOR_SETTINGS_INVALID: { status: 400, category: 'invalid_request', title: 'The connector settings are not valid' },
  ERR_CONNECTOR_REJECTED: { status: 502, category: 'internal', title: 'The connector target refused the step' },
  ERR_CONNECTOR_FAILED: { status: 502, category: 'internal', title: 'The connector step failed' },
  ERR_CONNECTOR_BAD_RESPONSE: { status: 502, category: 'internal', title: 'The connector target gave an answer that cannot be used' },
  ERR_CONNECTOR_TIMEOUT: { status: 504, category: 'internal', title: 'The connector step timed out' },
  ERR_CONNECTOR_EGRESS_REFUSED: { status: 502, category: 'internal', title: 'The server configuration does not allow calling that host' },
  ERR_CONNECTOR_PROGRAM_REFUSED: { status: 502, category: 'internal', title: 'The program is not registered, or its file changed since it was registered' },
  ERR_INCIDENT_SELECTOR_INVALID: { status: 400, category: 'invalid_request', title: 'The incident selector is not valid' },
  ERR_INCIDENT_NOT_FOUND: { status: 404, category: 'not_found', title: 'No such incident' },
  ERR_DECRYPTION_FAILED: { status: 500, category: 'internal', title: 'Decryption failed' },
  ERR_KEK_UNAVAILABLE: { status: 503, category: 'internal', title: 'The key-encryption key provider is not available' },
  ERR_INTERNAL: { status: 500, category: 'internal', title: 'Internal error' },
  ERR_UNAVAILABLE: { status: 503, category: 'internal', title: 'The service is not ready' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_REGISTRY;

/** A problem detail field pointing at the part of the input that is wrong. */
export interface ErrorDetail {
  readonly field?: string;
  readonly message: string;
}

export interface AppErrorOptions {
  readonly details?: readonly ErrorDetail[];
  readonly cause?: unknown;
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly category: ProblemCategory;
  readonly title: string;
  readonly details: readonly ErrorDetail[];

  constructor(code: ErrorCode, message?: string, options: AppErrorOptions = {}) {
    const spec: ErrorSpec = ERROR_REGISTRY[code];
    super(message ?? spec.title, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = spec.status;
    this.category = spec.category;
    this.title = spec.title;
    this.details = options.details ?? [];
  }
}

export function isAppError(value: unknown): value is AppError {
  return value instanceof AppError;
}
