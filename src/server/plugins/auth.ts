/**
 * Management API authentication: `Authorization: Bearer <management token>`. Service keys are
 * refused (they are what `verify` checks, never callers). Every failed authentication and every
 * denied call writes an audit event; none carries the presented token.
 */
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction, onRequestHookHandler } from 'fastify';
import { recordAuditEvent, type ActorContext } from '../../audit/index.js';
import type { KeyService, Principal, AuthFailure, AuthResult } from '../../keys/index.js';
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

/** The token from `Bearer <token>`; the scheme in any case (RFC 9110 §11.1). No regex: this runs on every call. */
function bearerToken(header: string): string | undefined {
  if (header.length < 8 || header.slice(0, 7).toLowerCase() !== 'bearer ') return undefined;
  const token = header.slice(7).trim();
  return token.length > 0 && !token.includes(' ') ? token : undefined;
}

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

/**
 * Builds an onRequest hook that authenticates the caller and requires one scope, before any
 * body is read. It is callback-style and stays synchronous when the token's row is cached:
 * it runs on every gateway call, so it must cost next to nothing.
 */
/**
 * What a route requires: one scope; a scope that depends on the request (a secret's path), worked
 * out once the caller is known; or `{ anyOf }`, any scope of a family (listing filters by path).
 */
export type ScopeRequirement = string | ((request: FastifyRequest) => string) | { readonly anyOf: string };

function allows(granted: readonly string[], required: string | { readonly anyOf: string }): boolean {
  if (typeof required === 'string') return hasScope(granted, required);
  return granted.some((scope) => scope === required.anyOf || scope.startsWith(`${required.anyOf}:`) || hasScope([scope], required.anyOf));
}

export function createAuthGuard(deps: AuthDeps): (requirement: ScopeRequirement) => onRequestHookHandler {
  const deny = (request: FastifyRequest, done: HookHandlerDoneFunction, error: AppError, action: string, data: Record<string, unknown>, target: string | null) => {
    recordAuditEvent(
      deps.store.db,
      actorContext(request),
      { action, target, data: { ...data, method: request.method, route: request.routeOptions.url ?? null } },
      new Date(deps.clock.now()).toISOString(),
    ).then(
      () => done(error),
      (auditError: unknown) => done(auditError instanceof Error ? auditError : new Error(String(auditError))),
    );
  };
  return (requirement: ScopeRequirement) =>
    function authGuard(request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
      reply.header('x-request-id', request.id);
      const header = request.headers.authorization;
      // The scheme is case-insensitive (RFC 9110 §11.1).
      const token = typeof header === 'string' ? bearerToken(header) : undefined;
      if (!token) {
        deny(request, done, new AppError('ERR_UNAUTHENTICATED', FAILURE_MESSAGES.missing), 'auth.failed', { reason: 'missing' }, null);
        return;
      }
      const decide = (result: AuthResult): void => {
        if (!result.ok) {
          // Name the key only if the token parsed, never the token itself.
          const keyId = result.keyId ?? parseKey(token)?.keyId ?? null;
          const error = new AppError(result.reason === 'SERVICE_KEY' ? 'ERR_FORBIDDEN' : 'ERR_UNAUTHENTICATED', FAILURE_MESSAGES[result.reason]);
          deny(request, done, error, 'auth.failed', { reason: result.reason.toLowerCase() }, keyId);
          return;
        }
        request.principal = result.principal;
        let scope: string | { readonly anyOf: string };
        try {
          scope = typeof requirement === 'function' ? requirement(request) : requirement;
        } catch (error) {
          done(error instanceof Error ? error : new Error(String(error)));
          return;
        }
        if (!allows(result.principal.scopes, scope)) {
          const name = typeof scope === 'string' ? scope : `${scope.anyOf}[:…]`;
          deny(request, done, new AppError('ERR_FORBIDDEN', `this token lacks the scope "${name}"`), 'auth.denied', { requiredScope: name }, null);
          return;
        }
        done();
      };
      const result = deps.keys.authenticate(token, request.ip);
      if (result instanceof Promise) result.then(decide, (error: unknown) => done(error instanceof Error ? error : new Error(String(error))));
      else decide(result);
    };
}
