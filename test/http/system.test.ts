import { describe, expect, it } from 'vitest';
import { describeEachDialect } from '../support/databases.js';
import { createKey, expectProblem, unknownKey, useContext, verifyKey } from './helpers.js';

describeEachDialect('system routes', (dialect) => {
  const ctx = useContext(dialect);

  describe('health', () => {
    it('answers /healthz with 200 and no token', async () => {
      const res = await ctx().request({ method: 'GET', url: '/healthz', token: null });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ status: 'ok' });
    });

    it('answers /readyz with 200 once the store answers', async () => {
      const res = await ctx().request({ method: 'GET', url: '/readyz', token: null });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ status: 'ready' });
    });

    it('ignores a bad token on the open routes', async () => {
      for (const url of ['/healthz', '/readyz', '/metrics', '/openapi.json']) {
        const res = await ctx().request({ method: 'GET', url, token: 'garbage' });
        expect(res.statusCode, url).toBe(200);
      }
    });
  });

  describe('/metrics', () => {
    it('counts verifications by outcome, verify latency and HTTP requests', async () => {
      const created = await createKey(ctx());
      await verifyKey(ctx(), created.key);
      await verifyKey(ctx(), created.key);
      await verifyKey(ctx(), unknownKey());
      await verifyKey(ctx(), 'nonsense');
      const res = await ctx().request({ method: 'GET', url: '/metrics', token: null });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/plain/);
      const text = res.body;
      expect(text).toMatch(/^keysmith_verifications_total\{outcome="VALID"\} 2$/m);
      expect(text).toMatch(/^keysmith_verifications_total\{outcome="NOT_FOUND"\} 1$/m);
      expect(text).toMatch(/^keysmith_verifications_total\{outcome="MALFORMED"\} 1$/m);
      expect(text).toMatch(/^keysmith_verify_duration_seconds_count 4$/m);
      expect(text).toMatch(/^keysmith_verify_duration_seconds_bucket\{le="\+Inf"\} 4$/m);
      expect(text).toMatch(/^keysmith_http_requests_total\{method="POST",route="\/v1\/keys\/verify",status="200"\} 4$/m);
      expect(text).toMatch(/^keysmith_http_requests_total\{method="POST",route="\/v1\/keys",status="201"\} \d+$/m);
    });

    it('labels HTTP requests by route pattern, never by raw URL or key', async () => {
      const created = await createKey(ctx());
      await ctx().request({ method: 'GET', url: `/v1/keys/${created.id}` });
      await ctx().request({ method: 'GET', url: `/v1/nowhere/${created.key}` });
      const text = (await ctx().request({ method: 'GET', url: '/metrics', token: null })).body;
      expect(text).toMatch(/route="\/v1\/keys\/:id",status="200"/);
      expect(text).not.toContain(created.id);
      expect(text).not.toContain(created.key);
      expect(text).not.toContain(ctx().rootToken);
      expect(text).toMatch(/route="unmatched",status="404"/);
    });

    it('counts refused calls with their status', async () => {
      await ctx().request({ method: 'GET', url: '/v1/keys', token: null });
      const text = (await ctx().request({ method: 'GET', url: '/metrics', token: null })).body;
      expect(text).toMatch(/^keysmith_http_requests_total\{method="GET",route="\/v1\/keys",status="401"\} \d+$/m);
    });
  });

  describe('/openapi.json', () => {
    it('is an OpenAPI 3.x document listing the API', async () => {
      const res = await ctx().request({ method: 'GET', url: '/openapi.json', token: null });
      expect(res.statusCode).toBe(200);
      const doc = res.json();
      expect(doc.openapi).toMatch(/^3\./);
      expect(doc.info).toMatchObject({ title: expect.any(String), version: expect.any(String) });
      const paths = Object.keys(doc.paths);
      for (const path of ['/v1/keys', '/v1/keys/verify', '/v1/keys/{id}', '/v1/keys/{id}/rotate', '/v1/keys/{id}/revoke', '/v1/keys/{id}/usage', '/v1/tokens', '/v1/tokens/{id}', '/v1/tokens/{id}/rotate', '/v1/tokens/{id}/revoke', '/v1/audit', '/v1/audit/verify']) {
        expect(paths).toContain(path);
      }
      expect(doc.paths['/v1/keys/verify'].post).toBeDefined();
      expect(doc.paths['/v1/keys/{id}'].patch).toBeDefined();
      expect(doc.paths['/v1/tokens'].get).toBeDefined();
      expect(doc.paths['/v1/tokens/{id}/rotate'].post).toBeDefined();
      expect(paths).not.toContain('/metrics');
      for (const path of ['/v1/secrets', '/v1/secrets/{path}', '/v1/secrets/{path}/versions', '/v1/secrets/{path}/promote', '/v1/secrets/{path}/readers', '/v1/kek', '/v1/kek/rotate']) {
        expect(paths).toContain(path);
      }
      expect(paths.filter((path) => path.includes('secret-actions') || path.includes('{*}'))).toEqual([]);
      expect(doc.paths['/v1/secrets/{path}'].put.parameters).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'path', in: 'path' })]));
      expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    });

    it('describes problem responses and never a hash field', async () => {
      const res = await ctx().request({ method: 'GET', url: '/openapi.json', token: null });
      const verify = res.json().paths['/v1/keys/verify'].post;
      expect(Object.keys(verify.responses)).toEqual(expect.arrayContaining(['200', '4XX']));
      expect(res.body).not.toMatch(/"keyHash"|"key_hash"/);
    });
  });

  describe('request ids', () => {
    it('gives every response a fresh x-request-id, matching the problem body', async () => {
      const a = await ctx().request({ method: 'GET', url: '/v1/keys?limit=1' });
      const b = await ctx().request({ method: 'GET', url: '/v1/keys?limit=1' });
      expect(a.headers['x-request-id']).toMatch(/^req_[0-9A-Za-z]{12,}$/);
      expect(a.headers['x-request-id']).not.toBe(b.headers['x-request-id']);
      const refused = await ctx().request({ method: 'GET', url: '/v1/keys', token: null });
      const problem = expectProblem(refused, 401);
      expect(problem.requestId).toMatch(/^req_/);
      expect(refused.headers['x-request-id']).toBe(problem.requestId);
    });

    it('does not take a request id from the caller', async () => {
      const res = await ctx().request({ method: 'GET', url: '/healthz', token: null, headers: { 'x-request-id': 'req_forged' } });
      expect(res.headers['x-request-id']).not.toBe('req_forged');
    });
  });
});
