/**
 * docs/scopes.md and the OpenAPI document say what the code does: each route's scope is read
 * from its guard (app.routeScopes), the one source both documents are checked against.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MANAGEMENT_SCOPES } from '../../src/policy/index.js';
import { createTestContext, type TestContext } from '../support/context.js';

const doc = readFileSync(new URL('../../docs/scopes.md', import.meta.url), 'utf8');

describe('docs/scopes.md and /openapi.json', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext('sqlite');
  });
  afterAll(async () => {
    await ctx.close();
  });

  const documented = () => ctx.app.routeScopes.filter((route) => !route.hidden && route.url.startsWith('/v1'));

  it('lists every /v1 route with the scope its guard requires, and no other route', () => {
    const rows = [...doc.matchAll(/^\| `([A-Z]+) (\/v1[^`]*)` \| `([^`]+)`/gm)].map((m) => `${m[1]} ${m[2]} ${m[3]}`);
    const routes = documented().map((route) => `${route.method} ${route.publicUrl} ${route.scope ?? 'NO GUARD'}`);
    expect([...rows].sort()).toEqual([...routes].sort());
    expect(new Set(rows).size).toBe(rows.length);
  });

  it('describes every management scope', () => {
    const described = [...doc.matchAll(/^\| `([a-z]+:[a-z]+)` \| /gm)].map((m) => m[1]);
    expect(described).toEqual([...MANAGEMENT_SCOPES]);
  });

  it('gives each /v1 operation its scope as OpenAPI security, under a bearer scheme', async () => {
    const openapi = (await ctx.request({ method: 'GET', url: '/openapi.json', token: null })).json() as {
      components: { securitySchemes: Record<string, { type: string; scheme: string }> };
      paths: Record<string, Record<string, { security?: unknown }>>;
    };
    expect(openapi.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    const routes = documented();
    expect(routes.length).toBeGreaterThan(40);
    for (const route of routes) {
      const operation = openapi.paths[route.publicUrl]?.[route.method.toLowerCase()];
      expect(operation, `${route.method} ${route.publicUrl}`).toBeDefined();
      expect(operation!.security, `${route.method} ${route.publicUrl}`).toEqual([{ bearer: [route.scope] }]);
    }
    expect(openapi.paths['/v1/keys']!.post!.security).toEqual([{ bearer: ['keys:create'] }]);
  });
});
