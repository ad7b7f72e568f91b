/**
 * The fast lanes answer before Fastify, so they must not answer a throttled address either
 * (issue 9, section 4): once an address is throttled after failed authentications, a verify
 * call or a cached vault read from it with a valid token is 429 with Retry-After, like every
 * other call, over a real socket.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildServer, createMetrics } from '../../src/server/index.js';
import { describeEachDialect } from '../support/databases.js';
import { createTestContext, serverServices, type TestContext } from '../support/context.js';

const LIMIT = 3;

describeEachDialect('fast lanes and a throttled address', (dialect) => {
  let ctx: TestContext;
  let app: FastifyInstance;
  let base: string;
  let verifier: string;
  let reader: string;

  beforeAll(async () => {
    ctx = await createTestContext(dialect);
    app = await buildServer({
      ...serverServices(ctx),
      random: (n) => Buffer.alloc(n, 3),
      metrics: createMetrics({ defaultMetrics: false }),
      authFailures: { windowMs: 60_000, limit: LIMIT, maxAddresses: 100 },
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    base = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
    verifier = await ctx.token(['keys:verify']);
    reader = await ctx.token(['secrets:read']);
    await ctx.secrets.put({ actor: ctx.rootTokenId }, 'throttle/app/db', { value: 'lane-value' });
  });

  afterAll(async () => {
    await app?.close();
    await ctx?.close();
  });

  const verify = (token: string) =>
    fetch(`${base}/v1/keys/verify`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ key: 'nope' }) });
  const read = (token: string) => fetch(`${base}/v1/secrets/throttle/app/db`, { headers: { authorization: `Bearer ${token}` } });

  it('answers in the lanes before, and 429 with Retry-After once the address is throttled', async () => {
    // Cached tokens and a cached value: these are the lanes' to answer.
    for (let i = 0; i < 2; i++) {
      expect((await verify(verifier)).status).toBe(200);
      expect((await read(reader)).status).toBe(200);
    }
    for (let i = 0; i < LIMIT; i++) expect((await fetch(`${base}/v1/keys`)).status).toBe(401);
    for (const res of [await verify(verifier), await read(reader)]) {
      expect(res.status).toBe(429);
      expect(res.headers.get('retry-after')).toBe('60');
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(((await res.json()) as { error: string }).error).toBe('ERR_RATE_LIMITED');
    }
    ctx.clock.advance(60_000);
    expect((await verify(verifier)).status).toBe(200);
    expect((await read(reader)).status).toBe(200);
  });
});
