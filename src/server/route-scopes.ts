/**
 * Which scope each route needs, read from the route's own guard as Fastify registers it: the
 * single source for the OpenAPI document (each operation's `security`), docs/scopes.md (kept in
 * step by a test) and the scope matrix test. A route added without a guard shows up here with
 * no requirement, and the matrix test refuses it.
 */
import type { FastifyInstance, RouteOptions } from 'fastify';
import { guardRequirement, requirementLabel, type ScopeRequirement } from './plugins/auth.js';

export interface RouteScope {
  readonly method: string;
  /** The route as Fastify knows it: `/v1/keys/:id`, `/v1/secret-actions/versions/*`. */
  readonly url: string;
  /** The route as users call it and the documents name it: `/v1/keys/{id}`, `/v1/secrets/{path}/versions`. */
  readonly publicUrl: string;
  readonly requirement: ScopeRequirement | undefined;
  /** The scope named in the documents, e.g. `keys:create` or `secrets:read:{path}`; null for a public route. */
  readonly scope: string | null;
  /** Left out of the OpenAPI document (health checks, the action-word catch-all). */
  readonly hidden: boolean;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Every route registered, with the scope its guard requires. */
    readonly routeScopes: readonly RouteScope[];
  }
}

const ACTION_ROUTE = /^\/v1\/secret-actions\/([a-z]+)\/\*$/;

/** A Fastify route URL in the form the OpenAPI document and the docs use. */
export function publicRoute(url: string): string {
  const action = ACTION_ROUTE.exec(url)?.[1];
  if (action !== undefined) return `/v1/secrets/{path}/${action}`;
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}').replace(/\/\*$/, '/{path}');
}

/**
 * Records every route registered after this call and gives each guarded operation its OpenAPI
 * `security` (bearer with the scope). Call it before registering @fastify/swagger and routes.
 */
export function recordRouteScopes(app: FastifyInstance): void {
  const routes: RouteScope[] = [];
  app.decorate('routeScopes', routes);
  app.addHook('onRoute', (options: RouteOptions) => {
    const requirement = guardRequirement(options.onRequest);
    const scope = requirement === undefined ? null : requirementLabel(requirement);
    const schema = (options.schema ?? {}) as Record<string, unknown>;
    const hidden = schema.hide === true;
    // A fresh schema object: route modules may share one between routes.
    options.schema = { ...schema, security: scope === null ? [] : [{ bearer: [scope] }] };
    const methods = Array.isArray(options.method) ? options.method : [options.method];
    for (const method of methods) {
      if (method === 'HEAD') continue; // Fastify's automatic HEAD for a GET
      routes.push({ method, url: options.url, publicUrl: publicRoute(options.url), requirement, scope, hidden });
    }
  });
}
