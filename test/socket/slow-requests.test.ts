/**
 * Slow clients are cut off (issue 9, section 4): a request whose headers or body trickle in is
 * answered 408 or closed once the server's timeout passes, on the Fastify routes and in the
 * verify fast lane alike (it runs inside the same node server). Real sockets: `inject()` has no
 * clock of its own, and goes around the fast lane (whose deep-body refusal is checked here too).
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildServer, createMetrics } from '../../src/server/index.js';
import { describeEachDialect } from '../support/databases.js';
import { createTestContext, serverServices, type TestContext } from '../support/context.js';

const TIMEOUT_MS = 1_000;
/** The timeout, node's check interval (half of it) and room for a loaded machine. */
const CUT_WITHIN_MS = TIMEOUT_MS * 4;
/** The writer gives up long after the bound, so a server that never cuts fails the test. */
const GIVE_UP_MS = CUT_WITHIN_MS + 4_000;

interface Trickled {
  readonly response: string;
  readonly elapsedMs: number;
  readonly closedByServer: boolean;
}

/** Sends `head` at once, then `trickle` one byte every 200 ms, until the server closes the socket. */
function trickle(port: number, head: string, trickleText: string): Promise<Trickled> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = connect({ host: '127.0.0.1', port });
    const received: Buffer[] = [];
    let sent = 0;
    let interval: NodeJS.Timeout | undefined;
    const giveUp = setTimeout(() => finish(false), GIVE_UP_MS);
    const finish = (closedByServer: boolean) => {
      clearInterval(interval);
      clearTimeout(giveUp);
      socket.destroy();
      resolve({ response: Buffer.concat(received).toString('latin1'), elapsedMs: Date.now() - started, closedByServer });
    };
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => finish(true));
    socket.on('connect', () => {
      socket.write(head);
      interval = setInterval(() => {
        if (sent < trickleText.length && !socket.destroyed) socket.write(trickleText[sent++]!);
      }, 200);
    });
  });
}

describeEachDialect('slow requests are cut off', (dialect) => {
  let ctx: TestContext;
  let app: FastifyInstance;
  let port: number;
  let verifyToken: string;

  beforeAll(async () => {
    ctx = await createTestContext(dialect);
    app = await buildServer({
      ...serverServices(ctx),
      random: (n) => Buffer.alloc(n, 7),
      metrics: createMetrics({ defaultMetrics: false }),
      timeouts: { requestMs: TIMEOUT_MS, headersMs: TIMEOUT_MS, keepAliveMs: TIMEOUT_MS },
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    port = typeof address === 'object' && address !== null ? address.port : 0;
    verifyToken = await ctx.token(['keys:verify']);
  });

  afterAll(async () => {
    await app?.close();
    await ctx?.close();
  });

  const expectCut = (result: Trickled) => {
    expect(result.closedByServer, `server kept the connection open; got:\n${result.response}`).toBe(true);
    expect(result.elapsedMs).toBeLessThan(CUT_WITHIN_MS);
    if (result.response !== '') expect(result.response).toMatch(/^HTTP\/1\.1 408 /);
  };

  it('cuts a secret PUT whose body trickles in', async () => {
    const body = JSON.stringify({ value: 'x'.repeat(200) });
    const head = `PUT /v1/secrets/slow/body HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer ${ctx.rootToken}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`;
    const result = await trickle(port, head, body);
    expectCut(result);
    expect(await ctx.secrets.list({}).then((page) => page.data.map((s) => s.path))).not.toContain('slow/body');
  });

  it('cuts a verify call in the fast lane whose body trickles in', async () => {
    const body = JSON.stringify({ key: `ks_live_${'a'.repeat(100)}` });
    const head = `POST /v1/keys/verify HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer ${verifyToken}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`;
    // A first call caches the token, so the trickled one is the lane's to read.
    const warm = await fetch(`http://127.0.0.1:${port}/v1/keys/verify`, {
      method: 'POST',
      headers: { authorization: `Bearer ${verifyToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ key: 'nope' }),
    });
    expect(warm.status).toBe(200);
    expectCut(await trickle(port, head, body));
  });

  it('cuts a request whose headers trickle in', async () => {
    expectCut(await trickle(port, 'GET /v1/keys HTTP/1.1\r\n', `host: localhost\r\nx-slow: ${'y'.repeat(100)}\r\n\r\n`));
  });

  it('refuses a deeply nested verify body in the fast lane with 400 ERR_JSON_TOO_DEEP', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/v1/keys/verify`, {
      method: 'POST',
      headers: { authorization: `Bearer ${verifyToken}`, 'content-type': 'application/json' },
      body: `{"key":"x","scopes":${'['.repeat(5_000)}${']'.repeat(5_000)}}`,
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe('ERR_JSON_TOO_DEEP');
  });

  it('still answers a request sent at once', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/v1/keys?limit=1`, { headers: { authorization: `Bearer ${ctx.rootToken}` } });
    expect(res.status).toBe(200);
  });
});
