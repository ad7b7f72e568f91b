/**
 * Management API authentication: `Authorization: Bearer <management token>`. Service keys are
 * refused (they are what `verify` checks, never callers). Every failed authentication and every
 * denied call writes an audit event; none carries the presented token.
 */
import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import { recordAuditEvent, type ActorContext } from '../../audit/index.js';
import type { KeyService, Principal, AuthFailure } from '../../keys/index.js';
import { hasScope } from '../../policy/index.js';
import { parseKey } from '../../keys/index.js';
import type { Store } from '../../store/index.js';
import type { Clock } from '../../shared/clock.js';
import { AppError } from '../../shared/errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

export interface AuthDeps {
  readonly keys: KeyService;
  readonly store: Store;
  readonly clock: Clock;
}

const BEARER_RE = /^bearer +(\S+) *$/i;

const FAILURE_MESSAGES: Record<AuthFailure | 'missing', string> = {
  missing: 'send a management token as "Authorization: Bearer <token>"',
  MALFORMED: 'the bearer token is not a Keysmith token',
  NOT_FOUND: 'the bearer token is not known to this server',
  REVOKED: 'the bearer token has been revoked',
  EXPIRED: 'the bearer token has expired',
  DISABLED: 'the bearer token is disabled',
  IP_NOT_ALLOWED: 'the bearer token may not be used from this address',
  SERVICE_KEY: 'a service key cannot call the management API; use a management token',
};

export function actorContext(request: FastifyRequest): ActorContext {
  return { actor: request.principal?.id ?? 'anonymous', requestId: request.id, sourceIp: request.ip };
}

/** Builds an onRequest hook that authenticates the caller and requires one scope, before any body is read. */
export function createAuthGuard(deps: AuthDeps): (scope: string) => onRequestAsyncHookHandler {
  const deny = async (request: FastifyRequest, action: string, data: Record<string, unknown>, target: string | null) => {
    await recordAuditEvent(
      deps.store.db,
      actorContext(request),
      { action, target, data: { ...data, method: request.method, route: request.routeOptions.url ?? null } },
      new Date(deps.clock.now()).toISOString(),
    );
  };
  return (scope: string) =>
    async function authGuard(this: unknown, request: FastifyRequest, _reply: FastifyReply) {
      const header = request.headers.authorization;
      // The scheme is case-insensitive (RFC 9110 §11.1).
      const token = typeof header === 'string' ? BEARER_RE.exec(header)?.[1] : undefined;
      if (!token) {
        await deny(request, 'auth.failed', { reason: 'missing' }, null);
        throw new AppError('ERR_UNAUTHENTICATED', FAILURE_MESSAGES.missing);
      }
      const result = await deps.keys.authenticate(token, request.ip);
      if (!result.ok) {
        // Name the key only if the token parsed, never the token itself.
        const keyId = result.keyId ?? parseKey(token)?.keyId ?? null;
        await deny(request, 'auth.failed', { reason: result.reason.toLowerCase() }, keyId);
        throw new AppError(result.reason === 'SERVICE_KEY' ? 'ERR_FORBIDDEN' : 'ERR_UNAUTHENTICATED', FAILURE_MESSAGES[result.reason]);
      }
      request.principal = result.principal;
      if (!hasScope(result.principal.scopes, scope)) {
        await deny(request, 'auth.denied', { requiredScope: scope }, null);
        throw new AppError('ERR_FORBIDDEN', `this token lacks the scope "${scope}"`);
      }
    };
}
