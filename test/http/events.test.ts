/**
 * `GET /v1/events` over a real socket: the server listens on a free port (so requests pass the
 * fast lanes in front of Fastify, as in production) and a plain node HTTP client reads the
 * stream as it arrives.
 */
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedKeyWire, StreamEventWire } from '../../src/contract/index.js';
import { secureRandom } from '../../src/crypto/index.js';
import { buildServer, createMetrics } from '../../src/server/index.js';
import { describeEachDialect } from '../support/databases.js';
import { createTestContext, serverServices, type TestContext } from '../support/context.js';
import { follow, openStream, type OpenStream } from '../support/sse.js';
import { auditAfter, auditHead, createKey, expectProblem, idOf, useContext } from './helpers.js';

const HEARTBEAT_MS = 150;
const EVENTS = { pollMs: 20, heartbeatMs: HEARTBEAT_MS };

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

describeEachDialect('GET /v1/events', (dialect) => {
  const ctx = useContext(dialect, { events: EVENTS });
  let base: string;
  const streams: OpenStream[] = [];
  const watch = async (path: string, headers: Record<string, string> = bearer(ctx().rootToken)) => {
    const stream = await follow(base, path, headers);
    streams.push(stream);
    return stream;
  };

  beforeAll(async () => {
    await ctx().app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(ctx().app.server.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    for (const stream of streams) stream.close();
  });

  const rotate = async (id: string): Promise<IssuedKeyWire> => {
    const res = await ctx().request({ method: 'POST', url: `/v1/keys/${id}/rotate`, body: { overlap: '1h' } });
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as IssuedKeyWire;
  };
  const revoke = async (id: string) => {
    const res = await ctx().request({ method: 'POST', url: `/v1/keys/${id}/revoke`, body: { reason: 'events test' } });
    expect(res.statusCode, res.body).toBe(200);
  };
  const putSecret = async (path: string, value: string) => {
    const res = await ctx().request({ method: 'PUT', url: `/v1/secrets/${path}`, body: { value } });
    expect(res.statusCode, res.body).toBeLessThan(300);
  };

  describe('happy path', () => {
    it('streams a key issue, rotation and revocation as events in order, each with its audit seq as id and action as name', async () => {
      const stream = await watch('/v1/events');
      expect(stream.headers['content-type']).toBe('text/event-stream; charset=utf-8');
      expect(stream.headers['cache-control']).toMatch(/no-cache/);
      expect(stream.headers['x-request-id']).toMatch(/^req_/);
      const head = await auditHead(ctx());
      // The opening message carries no event, only where the stream starts.
      expect(stream.messages[0]).toMatchObject({ dispatch: false, id: String(head) });

      const created = await createKey(ctx(), { owner: 'events-happy' });
      const successor = await rotate(created.id);
      await revoke(successor.id);
      await stream.until(() => stream.events().length >= 4);

      const logged = (await auditAfter(ctx(), head)).filter((event) => event.action.startsWith('key.'));
      const events = stream.events();
      expect(events.map((event) => [event.action, event.target])).toEqual([
        ['key.issued', created.id],
        ['key.rotated', created.id],
        ['key.issued', successor.id],
        ['key.revoked', successor.id],
      ]);
      expect(events.map((event) => event.seq)).toEqual(logged.map((event) => event.seq));
      const dispatched = stream.messages.filter((message) => message.dispatch);
      expect(dispatched.map((message) => message.id)).toEqual(events.map((event) => String(event.seq)));
      expect(dispatched.map((message) => message.event)).toEqual(events.map((event) => event.action));
      // Exactly the audit event's public fields.
      for (const [i, event] of events.entries()) {
        const source = logged[i]!;
        expect(event).toEqual({ seq: source.seq, time: source.time, action: source.action, target: source.target, actor: source.actor, data: source.data });
      }
      expect(events[1]!.data).toMatchObject({ successor: successor.id, overlap: '1h' });
    });

    it('never carries a key or token value, a hash, a request id or an address', async () => {
      const stream = await watch('/v1/events');
      const created = await createKey(ctx(), { owner: 'events-secrets' });
      const successor = await rotate(created.id);
      const issued = await ctx().request({ method: 'POST', url: '/v1/tokens', body: { scopes: ['keys:read'] } });
      const token = (issued.json() as IssuedKeyWire).key;
      await putSecret('events/radioactive', 'sk_live_do-not-stream-me');
      await stream.until(() => stream.events().some((event) => event.action.startsWith('secret.')));
      const text = stream.text();
      for (const value of [created.key, successor.key, token, ctx().rootToken, 'sk_live_do-not-stream-me']) expect(text).not.toContain(value);
      expect(text).not.toMatch(/ksm?_(live|test)_[0-9A-Za-z]{22}_/);
      expect(text).not.toMatch(/"(hash|prevHash|requestId|sourceIp|keyHash|value)"/);
      // Token events are not a streamed family.
      expect(stream.events().map((event) => event.action)).not.toContain('token.issued');
    });

    it('sends a keep-alive comment while idle', async () => {
      const stream = await watch('/v1/events?types=incident');
      const started = Date.now();
      await stream.until(() => (stream.text().match(/^: keep-alive\n\n/gm) ?? []).length >= 2);
      expect(Date.now() - started).toBeGreaterThanOrEqual(HEARTBEAT_MS);
    });

    it('keeps answering other calls, verify in the fast lane included, while streams are open', async () => {
      await watch('/v1/events');
      const created = await createKey(ctx(), { owner: 'events-fast-lane' });
      const res = await fetch(`${base}/v1/keys/verify`, {
        method: 'POST',
        headers: { ...bearer(ctx().rootToken), 'content-type': 'application/json' },
        body: JSON.stringify({ key: created.key }),
      });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ valid: true, code: 'VALID' });
    });

    it('counts streams in /metrics under the route pattern', async () => {
      await watch('/v1/events');
      const res = await ctx().request({ method: 'GET', url: '/metrics', token: null });
      expect(res.body).toMatch(/keysmith_http_requests_total\{method="GET",route="\/v1\/events",status="200"\} [1-9]/);
    });

    it('is described in the OpenAPI document as a text/event-stream', async () => {
      const doc = (await ctx().request({ method: 'GET', url: '/openapi.json', token: null })).json();
      const operation = doc.paths['/v1/events'].get;
      expect(Object.keys(operation.responses['200'].content)).toEqual(['text/event-stream']);
      expect(operation.parameters.map((p: { name: string }) => p.name)).toEqual(expect.arrayContaining(['types', 'target', 'since', 'last-event-id']));
    });
  });

  describe('several servers on one database', () => {
    it('streams on one server the changes made through another, read from the shared log', async () => {
      const c = ctx();
      const other = await buildServer({ ...serverServices(c), random: secureRandom, metrics: createMetrics({ defaultMetrics: false }), events: EVENTS });
      try {
        await other.listen({ host: '127.0.0.1', port: 0 });
        const stream = await follow(`http://127.0.0.1:${(other.server.address() as AddressInfo).port}`, '/v1/events?types=key', bearer(c.rootToken));
        const created = await createKey(c, { owner: 'events-cluster' });
        await stream.until(() => stream.events().length >= 1);
        expect(stream.events().map((event) => [event.action, event.target])).toEqual([['key.issued', created.id]]);
      } finally {
        await other.close();
      }
    });
  });

  describe('filters', () => {
    it('streams only the families in ?types', async () => {
      const secretsOnly = await watch('/v1/events?types=secret');
      const keysAndSecrets = await watch('/v1/events?types=key,secret');
      const created = await createKey(ctx(), { owner: 'events-types' });
      await putSecret('events/types', 'v1');
      await secretsOnly.until(() => secretsOnly.events().length >= 2);
      await keysAndSecrets.until(() => keysAndSecrets.events().length >= 3);
      // The key event came first in the log: had it passed the filter, it would have arrived first.
      expect(secretsOnly.events().map((event) => event.action)).toEqual(['secret.created', 'secret.version.added']);
      expect(keysAndSecrets.events().map((event) => [event.action, event.target])).toEqual([
        ['key.issued', created.id],
        ['secret.created', expect.stringMatching(/^sec_/)],
        ['secret.version.added', expect.stringMatching(/^sec_/)],
      ]);
    });

    it('streams only events about ?target: a key id, or secrets under a path prefix', async () => {
      const one = await createKey(ctx(), { owner: 'events-target' });
      const other = await createKey(ctx(), { owner: 'events-target' });
      const byKey = await watch(`/v1/events?target=${one.id}`);
      const byPath = await watch('/v1/events?target=payments');
      const byExactPath = await watch(`/v1/events?target=${encodeURIComponent('payments/stripe/api-key')}`);
      await rotate(other.id);
      await putSecret('paymentsx/not-under', 'a');
      await putSecret('payments/stripe/api-key', 'b');
      await putSecret('payments/sendgrid', 'c');
      await rotate(one.id);
      await byKey.until(() => byKey.events().length >= 1);
      await byPath.until(() => byPath.events().length >= 4);
      await byExactPath.until(() => byExactPath.events().length >= 2);
      // Wait for the last change to reach every stream before checking nothing else did.
      await revoke(one.id);
      await byKey.until(() => byKey.events().length >= 2);
      expect(byKey.events().map((event) => [event.action, event.target])).toEqual([
        ['key.rotated', one.id],
        ['key.revoked', one.id],
      ]);
      const created = ['secret.created', 'secret.version.added'];
      expect(byPath.events().map((event) => [event.action, event.data.path])).toEqual([
        ...created.map((action) => [action, 'payments/stripe/api-key']),
        ...created.map((action) => [action, 'payments/sendgrid']),
      ]);
      expect(byExactPath.events().map((event) => [event.action, event.data.path])).toEqual(created.map((action) => [action, 'payments/stripe/api-key']));
    });
  });

  describe('resuming', () => {
    it('replays from Last-Event-ID, then goes live, with no gap and no repeat at the seam', async () => {
      const created = await createKey(ctx(), { owner: 'events-resume' });
      const first = await watch('/v1/events?types=key');
      const before = await auditHead(ctx());
      for (let i = 0; i < 3; i++) await ctx().request({ method: 'PATCH', url: `/v1/keys/${created.id}`, body: { purpose: `p${i}` } });
      await first.until(() => first.events().length >= 3);
      const seen = first.events()[0]!.seq;
      first.close();

      // Changes keep coming while the second stream replays and goes live.
      const writes = (async () => {
        for (let i = 0; i < 12; i++) {
          const res = await ctx().request({ method: 'PATCH', url: `/v1/keys/${created.id}`, body: { purpose: `q${i}` } });
          expect(res.statusCode).toBe(200);
        }
      })();
      const resumed = await watch('/v1/events?types=key', { ...bearer(ctx().rootToken), 'last-event-id': String(seen) });
      await writes;
      const expected = (await auditAfter(ctx(), seen)).filter((event) => event.action.startsWith('key.')).map((event) => event.seq);
      expect(expected.length).toBe(14);
      await resumed.until(() => resumed.events().length >= expected.length);
      expect(resumed.events().map((event) => event.seq)).toEqual(expected);
      expect(expected[0]).toBeGreaterThan(before);
    });

    it('replays from ?since, and Last-Event-ID wins over it (as a reconnecting EventSource sends both)', async () => {
      const created = await createKey(ctx(), { owner: 'events-since' });
      const head = await auditHead(ctx());
      await revoke(created.id);
      const bySince = await watch(`/v1/events?types=key&since=${head - 1}`);
      const both = await watch(`/v1/events?types=key&since=0`, { ...bearer(ctx().rootToken), 'last-event-id': String(head) });
      await bySince.until(() => bySince.events().length >= 2);
      await both.until(() => both.events().length >= 1);
      expect(bySince.events().map((event) => [event.action, event.target])).toEqual([
        ['key.issued', created.id],
        ['key.revoked', created.id],
      ]);
      expect(both.events().map((event) => event.seq)).toEqual([head + 1]);
    });
  });

  describe('security', () => {
    it('answers 401 problem+json without a token', async () => {
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/events', token: null }), 401, 'ERR_UNAUTHENTICATED');
      const res = await fetch(`${base}/v1/events`);
      expect(res.status).toBe(401);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    });

    it('answers 403 problem+json to a token without events:read, and streams for one with only it', async () => {
      const auditor = await ctx().token(['audit:read', 'keys:read', 'secrets:read']);
      const problem = expectProblem(await ctx().request({ method: 'GET', url: '/v1/events', token: auditor }), 403, 'ERR_FORBIDDEN');
      expect(problem.detail).toContain('events:read');
      const reader = await ctx().token(['events:read']);
      const stream = await watch('/v1/events', bearer(reader));
      expect(stream.status).toBe(200);
    });

    it('ends a stream once its token is revoked, before another event reaches it; the reconnect gets 401', async () => {
      const token = await ctx().token(['events:read']);
      const stream = await watch('/v1/events?types=key', bearer(token));
      const revoked = await ctx().request({ method: 'POST', url: `/v1/tokens/${idOf(token)}/revoke`, body: { reason: 'events test' } });
      expect(revoked.statusCode, revoked.body).toBe(200);
      const created = await createKey(ctx(), { owner: 'events-after-revoke' });
      await stream.ended;
      expect(stream.events().map((event) => event.target)).not.toContain(created.id);
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/events', token }), 401, 'ERR_UNAUTHENTICATED');
    });

    it('opens no stream for HEAD', async () => {
      const res = await ctx().app.inject({ method: 'HEAD', url: '/v1/events', headers: bearer(ctx().rootToken) });
      expect(res.statusCode).toBe(404);
    });
  });

  describe('bad input', () => {
    it.each([
      ['an unknown type', '/v1/events?types=key,auth', 'types'],
      ['an empty type', '/v1/events?types=key,', 'types'],
      ['a negative since', '/v1/events?since=-1', 'since'],
      ['a since that is not a number', '/v1/events?since=abc', 'since'],
      ['an unknown parameter', '/v1/events?colour=red', 'colour'],
    ])('answers 400 problem+json to %s', async (_name, url, field) => {
      const body = expectProblem(await ctx().request({ method: 'GET', url }), 400, 'ERR_INVALID_REQUEST', 'invalid_request');
      expect(JSON.stringify(body)).toContain(field);
    });

    it('answers 400 to a Last-Event-ID that is not a sequence number', async () => {
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/events', headers: { 'last-event-id': 'abc' } }), 400, 'ERR_INVALID_REQUEST');
    });

    it('answers 400 to a resume point past the end of the log', async () => {
      const head = await auditHead(ctx());
      const body = expectProblem(await ctx().request({ method: 'GET', url: `/v1/events?since=${head + 1000}` }), 400, 'ERR_INVALID_REQUEST');
      expect(body.detail).toContain(String(head));
    });
  });
});

describeEachDialect('GET /v1/events on shutdown', (dialect) => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext(dialect, { events: EVENTS });
    await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await ctx.close();
  });

  it('ends open streams when the server closes, so close() does not wait on them', async () => {
    const base = `http://127.0.0.1:${(ctx.app.server.address() as AddressInfo).port}`;
    const streams = await Promise.all([follow(base, '/v1/events', bearer(ctx.rootToken)), follow(base, '/v1/events?types=key', bearer(ctx.rootToken))]);
    // A client that left early is cleaned up, not waited on.
    const gone = await follow(base, '/v1/events', bearer(ctx.rootToken));
    gone.close();
    const started = Date.now();
    await ctx.app.close();
    expect(Date.now() - started).toBeLessThan(5_000);
    await Promise.all(streams.map((stream) => stream.ended));
  });
});
