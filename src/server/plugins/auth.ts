/**
 * Management API authentication: `Authorization: Bearer <management token>`. Service keys are
 * refused (they are what `verify` checks, never callers). Every refused call is audited: failed
 * authentication aggregated and throttled per address (auth-failures.ts), a missing scope
 * aggregated per principal, scope and route but always answered 403 (auth-denials.ts); no event
 * carries the presented token.
 */
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction, onRequestHookHandler } from 'fastify';
import type { ActorContext, AuditLog } from '../../audit/index.js';
import type { KeyService, Principal, AuthFailure, AuthResult } from '../../keys/index.js';
import { hasScope } from '../../policy/index.js';
import { parseKey } from '../../keys/index.js';
import type { Store } from '../../store/index.js';
import type { Clock } from '../../shared/clock.js';
import { AppError } from '../../shared/errors.js';
import type { AuthFailureTracker, FailureInfo } from './auth-failures.js';
import type { AuthDenialTracker } from './auth-denials.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

export interface AuthDeps {
  readonly keys: KeyService;
  readonly store: Store;
  readonly audit: AuditLog;
  readonly clock: Clock;
  /** Aggregates and throttles failed authentication per address; without it each failure is written. */
  readonly failures?: AuthFailureTracker | undefined;
  /** Aggregates the audit events of refused scopes (the 403 stays); without it each denial is written. */
  readonly denials?: AuthDenialTracker | undefined;
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

/** Why a call may not go on, and the audit event that says so. */
export interface AccessDenial {
  readonly error: AppError;
  readonly action: 'auth.failed' | 'auth.denied';
  readonly data: Record<string, unknown>;
  readonly target: string | null;
  /** Set when the token authenticated but lacks the scope: the audit event names it as actor. */
  readonly principal?: Principal;
}

/**
 * What a route requires: one scope; a scope of a family qualified by the request (a secret's
 * path), worked out once the caller is known (`family` is what the documentation names); or
 * `{ anyOf }`, any scope of a family (listing filters by path).
 */
export type ScopeRequirement =
  | string
  | { readonly anyOf: string }
  | { readonly family: string; readonly qualified: (request: FastifyRequest) => string };

/** The requirement as the OpenAPI document, docs/scopes.md and the scope matrix name it. */
export function requirementLabel(requirement: ScopeRequirement): string {
  if (typeof requirement === 'string') return requirement;
  if ('anyOf' in requirement) return `${requirement.anyOf}[:path]`;
  return `${requirement.family}:{path}`;
}

const REQUIREMENT = Symbol('keysmith.scopeRequirement');
type GuardHook = onRequestHookHandler & { readonly [REQUIREMENT]?: ScopeRequirement };

/**
 * The scope requirement of a route's guard, read from its onRequest hooks; undefined when the
 * route has no guard. The guard is the single source: docs, OpenAPI and tests read it here.
 */
export function guardRequirement(onRequest: unknown): ScopeRequirement | undefined {
  const hooks = Array.isArray(onRequest) ? onRequest : onRequest === undefined ? [] : [onRequest];
  for (const hook of hooks) {
    const requirement = (hook as GuardHook)[REQUIREMENT];
    if (requirement !== undefined) return requirement;
  }
  return undefined;
}

/** A requirement for one request: a function is called only after authentication succeeds. */
type RequiredScope = string | (() => string) | { readonly anyOf: string };

function allows(granted: readonly string[], required: string | { readonly anyOf: string }): boolean {
  if (typeof required === 'string') return hasScope(granted, required);
  // Any form of the family: itself or a wildcard over it (hasScope), or a qualified form of it.
  return hasScope(granted, required.anyOf) || granted.some((scope) => scope.startsWith(`${required.anyOf}:`));
}

export type AccessDecision = { readonly ok: true; readonly principal: Principal } | ({ readonly ok: false } & AccessDenial);

/**
 * Whether an `Authorization` header grants a scope from this address. Synchronous when the
 * token's row is cached. The Fastify guard and the verify fast lane both decide through it.
 * A scope worked out from the request may throw (a malformed secret path): that error is the
 * answer, after authentication and without an audit event.
 */
export function checkAccess(keys: KeyService, header: string | undefined, ip: string | undefined, scope: RequiredScope): AccessDecision | Promise<AccessDecision> {
  // The scheme is case-insensitive (RFC 9110 §11.1).
  const token = typeof header === 'string' ? bearerToken(header) : undefined;
  if (!token) {
    return { ok: false, error: new AppError('ERR_UNAUTHENTICATED', FAILURE_MESSAGES.missing), action: 'auth.failed', data: { reason: 'missing' }, target: null };
  }
  const result = keys.authenticate(token, ip);
  return result instanceof Promise ? result.then((settled) => decideAccess(token, settled, scope)) : decideAccess(token, result, scope);
}

function decideAccess(token: string, result: AuthResult, requirement: RequiredScope): AccessDecision {
  if (!result.ok) {
    // Name the key only if the token parsed, never the token itself.
    const keyId = result.keyId ?? parseKey(token)?.keyId ?? null;
    const error = new AppError(result.reason === 'SERVICE_KEY' ? 'ERR_FORBIDDEN' : 'ERR_UNAUTHENTICATED', FAILURE_MESSAGES[result.reason]);
    return { ok: false, error, action: 'auth.failed', data: { reason: result.reason.toLowerCase() }, target: keyId };
  }
  const scope = typeof requirement === 'function' ? requirement() : requirement;
  if (!allows(result.principal.scopes, scope)) {
    const name = typeof scope === 'string' ? scope : `${scope.anyOf}[:…]`;
    const error = new AppError('ERR_FORBIDDEN', `this token lacks the scope "${name}"`);
    return { ok: false, error, action: 'auth.denied', data: { requiredScope: name }, target: null, principal: result.principal };
  }
  return { ok: true, principal: result.principal };
}

function failureInfo(request: FastifyRequest, reason: string, target: string | null): FailureInfo {
  return { reason, target, ip: request.ip, requestId: request.id, method: request.method, route: request.routeOptions.url ?? null };
}

/**
 * Builds an onRequest hook that authenticates the caller and requires a scope, before any
 * body is read. It is callback-style and stays synchronous when the token's row is cached:
 * it runs on every gateway call, so it must cost next to nothing.
 */
export function createAuthGuard(deps: AuthDeps): (requirement: ScopeRequirement) => onRequestHookHandler {
  const failures = deps.failures;
  const denials = deps.denials;
  const settle = (done: HookHandlerDoneFunction, error: AppError, written: Promise<void> | undefined) => {
    if (written === undefined) done(error);
    else written.then(() => done(error), (auditError: unknown) => done(auditError instanceof Error ? auditError : new Error(String(auditError))));
  };
  const deny = (request: FastifyRequest, done: HookHandlerDoneFunction, denial: AccessDenial, label: string) => {
    if (denial.principal) request.principal = denial.principal;
    if (failures !== undefined && denial.action === 'auth.failed') {
      settle(done, denial.error, failures.fail(failureInfo(request, String(denial.data.reason), denial.target)));
      return;
    }
    if (denials !== undefined && denial.action === 'auth.denied' && denial.principal !== undefined) {
      const route = request.routeOptions.url ?? null;
      const requiredScope = String(denial.data.requiredScope);
      const info = { principalId: denial.principal.id, requirement: label, requiredScope, ip: request.ip, requestId: request.id, method: request.method, route };
      settle(done, denial.error, denials.deny(info));
      return;
    }
    deps.audit.record(
      deps.store.db,
      actorContext(request),
      { action: denial.action, target: denial.target, data: { ...denial.data, method: request.method, route: request.routeOptions.url ?? null } },
      new Date(deps.clock.now()).toISOString(),
    ).then(
      () => done(denial.error),
      (auditError: unknown) => done(auditError instanceof Error ? auditError : new Error(String(auditError))),
    );
  };
  return (requirement: ScopeRequirement) => {
    const label = requirementLabel(requirement);
    function authGuard(request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
      reply.header('x-request-id', request.id);
      // A throttled address is refused before its token is looked at.
      const wait = failures === undefined ? 0 : failures.retryAfter(request.ip);
      if (wait > 0 && failures !== undefined) {
        reply.header('retry-after', String(wait));
        const error = new AppError('ERR_RATE_LIMITED', `too many failed authentications from this address; try again in ${wait} s`);
        settle(done, error, failures.fail(failureInfo(request, 'throttled', null)));
        return;
      }
      const decide = (decision: AccessDecision): void => {
        if (!decision.ok) {
          deny(request, done, decision, label);
          return;
        }
        request.principal = decision.principal;
        done();
      };
      const fail = (error: unknown) => done(error instanceof Error ? error : new Error(String(error)));
      let decision: AccessDecision | Promise<AccessDecision>;
      try {
        const scope: RequiredScope = typeof requirement === 'object' && 'qualified' in requirement ? () => requirement.qualified(request) : requirement;
        decision = checkAccess(deps.keys, request.headers.authorization, request.ip, scope);
      } catch (error) {
        fail(error);
        return;
      }
      if (decision instanceof Promise) decision.then(decide, fail);
      else decide(decision);
    }
    return Object.assign(authGuard, { [REQUIREMENT]: requirement });
  };
}
