/**
 * egressRequest against real sockets on 127.0.0.1: the connection goes to the address that was
 * checked (DNS is asked once, so a rebinding answer cannot move it), refusals happen before any
 * connection, and redirects come back as they are.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EgressRefusedError, OutboundNetworkError, createEgress, egressRequest, type Resolver } from '../../src/outbound/index.js';

let server: Server;
let port: number;
const hits: Array<{ host: string | undefined; path: string | undefined }> = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    hits.push({ host: req.headers.host, path: req.url });
    if (req.url === '/redirect') res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' }).end();
    else res.writeHead(200, { 'content-type': 'text/plain' }).end(`hello ${req.method}`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

/** A resolver that answers each name from a queue: the first lookup gets the first answer, and so on. */
function rebinding(answers: string[][]): Resolver & { calls: number } {
  const resolver = Object.assign(
    async () => {
      const answer = answers[Math.min(resolver.calls, answers.length - 1)]!;
      resolver.calls += 1;
      return answer.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
    },
    { calls: 0 },
  );
  return resolver;
}

describe('egressRequest', () => {
  it('connects to the checked address of a listed name, sending the name as Host', async () => {
    const egress = createEgress({ allow: [`vendor.test:${port}`, `127.0.0.1:${port}`], resolver: rebinding([['127.0.0.1']]) });
    const answer = await egressRequest(egress, `http://vendor.test:${port}/hello`, { method: 'POST', body: '{}' });
    expect(answer).toEqual({ status: 200, text: 'hello POST' });
    expect(hits.at(-1)).toEqual({ host: `vendor.test:${port}`, path: '/hello' });
  });

  it('asks DNS once and connects where it checked, so a rebinding answer cannot move the connection', async () => {
    // An allowed answer first, a metadata address for any later lookup (what a rebinding server does).
    const resolver = rebinding([['127.0.0.1'], ['169.254.169.254']]);
    const egress = createEgress({ allow: [`rebind.test:${port}`, `127.0.0.1:${port}`], resolver });
    const before = hits.length;
    expect((await egressRequest(egress, `http://rebind.test:${port}/x`)).status).toBe(200);
    expect(resolver.calls).toBe(1);
    expect(hits.length).toBe(before + 1);
    // The next request looks again and gets the metadata address: refused, nothing sent.
    const error = await egressRequest(egress, `http://rebind.test:${port}/y`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EgressRefusedError);
    expect((error as Error).message).toBe('egress to rebind.test is refused: 169.254.169.254 is a metadata address and no IP rule lists it');
    expect(hits.length).toBe(before + 1);
  });

  it('refuses a name that resolves to a private address when only the name is listed, before connecting', async () => {
    const egress = createEgress({ allow: [`internal.test:${port}`], resolver: rebinding([['127.0.0.1']]) });
    const before = hits.length;
    await expect(egressRequest(egress, `http://internal.test:${port}/`)).rejects.toThrow(/127\.0\.0\.1 is a loopback address/);
    await expect(egressRequest(egress, `http://[::ffff:127.0.0.1]:${port}/`)).rejects.toThrow(EgressRefusedError);
    await expect(egressRequest(egress, `http://localhost:${port}/`)).rejects.toThrow(/localhost:\d+ is not in egress\.allow/);
    expect(hits.length).toBe(before);
  });

  it('returns a redirect as it is, without following it', async () => {
    const egress = createEgress({ allow: [`127.0.0.1:${port}`] });
    const before = hits.length;
    const answer = await egressRequest(egress, `http://127.0.0.1:${port}/redirect`);
    expect(answer.status).toBe(302);
    expect(hits.length).toBe(before + 1);
  });

  it('reports a refused connection as a network error with its code', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const egress = createEgress({ allow: [`127.0.0.1:${closedPort}`] });
    const error = await egressRequest(egress, `http://127.0.0.1:${closedPort}/`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OutboundNetworkError);
    expect((error as OutboundNetworkError).code).toBe('ECONNREFUSED');
  });
});
