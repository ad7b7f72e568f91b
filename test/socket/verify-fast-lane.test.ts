/**
 * The verify fast lane (src/server/fast-verify.ts) over real sockets. `inject()` goes around
 * it, so these tests listen on 127.0.0.1 and write raw HTTP/1.1. Two servers share one key
 * service and store: one with the lane, one without. Every case is sent to both, and the
 * raw responses (status line, headers, body; the Date header aside), the audit events and,
 * at the end, the metrics must be the same. Request ids are compared too: both servers draw
 * them from generators with the same seed, so they stay in step only if the lane takes an id
 * exactly when Fastify would have.
 */
import { connect } from 'node:net';
import { tracingChannel } from 'node:diagnostics_channel';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { buildServer, createMetrics, type ServerMetrics } from '../../src/server/index.js';
import type { IssuedKey } from '../../src/keys/index.js';
import { describeEachDialect } from '../support/databases.js';
import { createTestContext, serverServices, type TestContext } from '../support/context.js';
import { unknownKey, wrongSecretFor } from '../http/helpers.js';

const PATH = '/v1/keys/verify';
const HOUR = 3_600_000;

interface Target {
  readonly app: FastifyInstance;
  readonly metrics: ServerMetrics;
  readonly port: number;
}

/** Route handler runs per local port: the lane must keep the happy path away from Fastify. */
const handled = new Map<number, number>();
tracingChannel('fastify.request.handler').start.subscribe((message) => {
  const port = (message as { request: FastifyRequest }).request.socket.localPort ?? 0;
  handled.set(port, (handled.get(port) ?? 0) + 1);
});

/** Writes `parts` (pausing between them) and reads until the server closes the connection. */
function exchange(port: number, parts: ReadonlyArray<string | Buffer>, gapMs = 0): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const received: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no close from the server; got:\n${Buffer.concat(received).toString('latin1')}`));
    }, 5_000);
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    // A server that answers before the whole request is written may reset the connection.
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(received).toString('latin1'));
    });
    socket.on('connect', () => {
      void (async () => {
        for (const [i, part] of parts.entries()) {
          if (i > 0 && gapMs > 0) await sleep(gapMs);
          if (!socket.destroyed) socket.write(part);
        }
      })();
    });
  });
}

/** One request in HTTP/1.1 wire form; `content-length` is added unless a header says otherwise. */
function http(options: {
  method?: string;
  path?: string;
  headers?: Record<string, string | undefined>;
  body?: string | Buffer;
  close?: boolean;
  version?: string;
}): string {
  const body = options.body ?? '';
  const headers: Record<string, string | undefined> = {
    host: 'localhost',
    ...(options.body !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } : {}),
    ...(options.close === false ? {} : { connection: 'close' }),
    ...options.headers,
  };
  const lines = Object.entries(headers)
    .filter((entry): entry is [string, string] => entry[1] !== undefined)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  return `${options.method ?? 'POST'} ${options.path ?? PATH} ${options.version ?? 'HTTP/1.1'}\r\n${lines}\r\n${body.toString()}`;
}

const withoutDate = (raw: string) => raw.replace(/^date: .*\r\n/gim, 'date: <date>\r\n');

function statusOf(raw: string): number {
  return Number(/^HTTP\/1\.[01] (\d{3})/.exec(raw)?.[1] ?? 0);
}

describeEachDialect('verify fast lane over a socket', (dialect) => {
  let ctx: TestContext;
  let fast: Target;
  let plain: Target;
  let gateway: string;
  let key: IssuedKey;
  let revoked: IssuedKey;
  let allowlisted: IssuedKey;
  let rotated: IssuedKey;
  let shortLived: IssuedKey;
  let disabled: IssuedKey;
  let limited: IssuedKey;
  let readOnly: string;
  let revokedToken: string;
  let shortToken: string;
  let allowlistedToken: string;

  const start = async (fastVerify: boolean): Promise<Target> => {
    const metrics = createMetrics({ defaultMetrics: false });
    const app = await buildServer({
      ...serverServices(ctx),
      // The same seed on both servers: request ids must stay in step.
      random: (size) => new Uint8Array(size).fill(7),
      metrics,
      fastVerify,
      // One audit event per refusal, so both servers' events compare call by call; the lane under
      // aggregation and throttling is test/socket/auth-throttle.test.ts.
      authFailures: false,
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    if (address === null || typeof address === 'string') throw new Error('not listening on a port');
    return { app, metrics, port: address.port };
  };

  beforeAll(async () => {
    // Opened values cached, as the server runs with the local KEK provider: the read lane needs them.
    ctx = await createTestContext(dialect, { secretPolicy: { cacheOpenedValues: true } });
    fast = await start(true);
    plain = await start(false);
    const actor = { actor: ctx.rootTokenId };
    gateway = await ctx.token(['keys:verify']);
    readOnly = await ctx.token(['keys:read']);
    revokedToken = await ctx.token(['keys:verify']);
    await ctx.keys.revoke(actor, await idOf(revokedToken), 'test', { kind: 'management', callerScopes: ['*'] });
    shortToken = (await ctx.keys.issueToken(actor, ['*'], { scopes: ['keys:verify'], ttl: '2h' })).key;
    allowlistedToken = (await ctx.keys.issueToken(actor, ['*'], { scopes: ['keys:verify'], ipAllowlist: ['10.0.0.0/8'] })).key;
    key = await ctx.keys.issue(actor, { owner: 'payments', scopes: ['orders:read', 'orders:write'] });
    revoked = await ctx.keys.issue(actor, { owner: 'payments' });
    await ctx.keys.revoke(actor, revoked.record.id, 'leaked');
    allowlisted = await ctx.keys.issue(actor, { owner: 'payments', ipAllowlist: ['10.0.0.0/8'] });
    const old = await ctx.keys.issue(actor, { owner: 'payments', scopes: ['orders:read'] });
    await ctx.keys.rotate(actor, old.record.id, { overlap: '1h' });
    rotated = old;
    shortLived = await ctx.keys.issue(actor, { owner: 'payments', ttl: '1h' });
    disabled = await ctx.keys.issue(actor, { owner: 'payments' });
    await ctx.keys.disable(actor, disabled.record.id);
    // One verify an hour, spent here: both servers share the limiter, so each answer below is
    // RATE_LIMITED with the same remaining count and reset (the clock is fixed).
    limited = await ctx.keys.issue(actor, { owner: 'payments', scopes: ['orders:read'], rateLimit: { limit: 1, window: '1h' } });
    expect((await ctx.keys.verify({ key: limited.key })).code).toBe('VALID');
  });

  afterAll(async () => {
    await fast?.app.close();
    await plain?.app.close();
    await ctx?.close();
  });

  async function idOf(token: string): Promise<string> {
    const matched = await ctx.keys.verifier.match(token);
    if (typeof matched === 'string') throw new Error('not a token');
    return matched.id;
  }

  async function auditSince(seq: number) {
    const rows = await ctx.store.db.selectFrom('audit_events').selectAll().where('seq', '>', seq).orderBy('seq').execute();
    return rows.map((row) => ({ actor: row.actor, action: row.action, target: row.target, requestId: row.request_id, sourceIp: row.source_ip, data: JSON.parse(row.data) as unknown }));
  }

  async function auditHead(): Promise<number> {
    const row = await ctx.store.db.selectFrom('audit_events').select((eb) => eb.fn.max('seq').as('seq')).executeTakeFirst();
    return Number(row?.seq ?? 0);
  }

  /**
   * Sends the same bytes to both servers and expects the same answer and the same audit
   * events. Returns the lane's raw response.
   */
  async function same(parts: ReadonlyArray<string | Buffer>, gapMs = 0): Promise<{ raw: string; audit: unknown[] }> {
    let head = await auditHead();
    const fromFast = await exchange(fast.port, parts, gapMs);
    const fastAudit = await auditSince(head);
    head = await auditHead();
    const fromPlain = await exchange(plain.port, parts, gapMs);
    const plainAudit = await auditSince(head);
    expect(withoutDate(fromFast)).toBe(withoutDate(fromPlain));
    expect(fastAudit).toEqual(plainAudit);
    return { raw: fromFast, audit: fastAudit };
  }

  const post = (body: unknown, headers: Record<string, string | undefined> = {}, token: string | null = gateway) =>
    http({ body: typeof body === 'string' ? body : JSON.stringify(body), headers: { authorization: token === null ? undefined : `Bearer ${token}`, ...headers } });

  const bodyOf = (raw: string) => JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;

  it('answers every verify outcome with the same bytes as the Fastify route, without the route', async () => {
    // The gateway token's row is not cached yet: the lane leaves this call to the route's guard.
    const first = await same([post({ key: key.key })]);
    expect(bodyOf(first.raw).code).toBe('VALID');
    const before = handled.get(fast.port) ?? 0;
    const plainBefore = handled.get(plain.port) ?? 0;
    const cases: Array<[unknown, string]> = [
      [{ key: key.key }, 'VALID'],
      [{ key: key.key }, 'VALID'],
      [{ key: key.key, scopes: ['orders:read'], ip: '203.0.113.7', userAgent: 'gw/1' }, 'VALID'],
      [{ key: revoked.key }, 'REVOKED'],
      [{ key: 'ks_live_nonsense' }, 'MALFORMED'],
      [{ key: '' }, 'MALFORMED'],
      [{ key: unknownKey() }, 'NOT_FOUND'],
      [{ key: wrongSecretFor(key.key) }, 'NOT_FOUND'],
      [{ key: key.key, scopes: ['admin:all'] }, 'INSUFFICIENT_SCOPE'],
      [{ key: allowlisted.key, ip: '203.0.113.7' }, 'IP_NOT_ALLOWED'],
      [{ key: allowlisted.key }, 'IP_NOT_ALLOWED'],
      [{ key: allowlisted.key, ip: '10.1.2.3' }, 'VALID'],
      [{ key: rotated.key }, 'VALID'],
      [{ key: disabled.key }, 'DISABLED'],
      [{ key: limited.key }, 'RATE_LIMITED'],
      [{ key: limited.key, scopes: ['orders:read'] }, 'RATE_LIMITED'],
    ];
    for (const [body, code] of cases) {
      const { raw, audit } = await same([post(body)]);
      expect(statusOf(raw)).toBe(200);
      expect(raw).toMatch(/\r\ncontent-type: application\/json; charset=utf-8\r\n/);
      expect(raw).toMatch(/\r\nx-request-id: req_\w+\r\n/);
      expect(bodyOf(raw).code).toBe(code);
      expect(audit).toEqual([]);
    }
    expect(bodyOf((await same([post({ key: rotated.key })])).raw).rotation).toMatchObject({ replacedBy: expect.stringMatching(/^key_/) });
    // Rows loaded on the way (the lane waits for them) or cached: none of these reached the route.
    expect((handled.get(fast.port) ?? 0) - before).toBe(0);
    expect((handled.get(plain.port) ?? 0) - plainBefore).toBe(cases.length + 1);
  });

  it('hands every refused caller to the guard: same problem, same audit event', async () => {
    const refusals: Array<[string | null, number, Record<string, string>?]> = [
      [null, 401],
      ['not-a-token', 401],
      [unknownKey('ksm'), 401],
      [readOnly, 403],
      [key.key, 403],
      [revokedToken, 401],
      [allowlistedToken, 401],
    ];
    for (const [token, status] of refusals) {
      const { raw, audit } = await same([post({ key: key.key }, {}, token)]);
      expect(statusOf(raw)).toBe(status);
      expect(raw).toMatch(/\r\ncontent-type: application\/problem\+json; charset=utf-8\r\n/);
      expect(audit).toHaveLength(1);
    }
    for (const header of [`bearer ${gateway}`, `Basic ${gateway}`, `Bearer  ${gateway} x`, 'Bearer']) {
      await same([post({ key: key.key }, { authorization: header }, null)]);
    }
  });

  it('hands every body it cannot answer to Fastify, which refuses it as it would have', async () => {
    const bodies: Array<[string, number]> = [
      ['{"key":', 400],
      ['', 400],
      ['null', 400],
      ['[]', 400],
      ['"text"', 400],
      ['{"key":"ks_live_x","extra":1}', 400],
      ['{"scopes":["a"]}', 400],
      ['{"key":42}', 400],
      ['{"key":"ks_live_x","ip":"not an ip"}', 400],
      ['{"key":"ks_live_x","__proto__":{"a":1}}', 400],
      ['{"key":"ks_live_x","constructor":{"prototype":{"a":1}}}', 400],
      [JSON.stringify({ key: 'k'.repeat(20_000) }), 400],
      [`{"key":"${'k'.repeat(1000)}\u00e9"}`, 200],
    ];
    for (const [body, status] of bodies) {
      const { raw } = await same([post(body)]);
      expect(statusOf(raw), body.slice(0, 60)).toBe(status);
    }
    for (const type of ['text/plain', 'application/json; charset=latin1', 'APPLICATION/JSON', 'application/jsonx', undefined]) {
      await same([post({ key: key.key }, { 'content-type': type })]);
    }
    // Larger than the body limit: refused from the header, before any body is sent.
    const { raw } = await same([post({ key: key.key }, { 'content-length': String(2 * 1024 * 1024) }).replace(/\r\n\r\n.*$/s, '\r\n\r\n')]);
    expect(statusOf(raw)).toBe(413);
  });

  it('treats chunked, split, slow, pipelined, 1.0 and expect-continue requests alike', async () => {
    const json = JSON.stringify({ key: key.key });
    const chunked = http({ body: `${json.length.toString(16)}\r\n${json}\r\n0\r\n\r\n`, headers: { authorization: `Bearer ${gateway}`, 'content-length': undefined, 'transfer-encoding': 'chunked' } });
    expect(bodyOf((await same([chunked])).raw.replace(/\r\n\r\n[0-9a-f]+\r\n/, '\r\n\r\n')).code).toBe('VALID');
    const whole = post({ key: key.key });
    const split = whole.indexOf('\r\n\r\n') + 4;
    expect(statusOf((await same([whole.slice(0, split), whole.slice(split, split + 10), whole.slice(split + 10)], 30)).raw)).toBe(200);
    expect(statusOf((await same([whole.slice(0, 25), whole.slice(25)], 30)).raw)).toBe(200);
    const keepAlive = (body: unknown) => http({ body: JSON.stringify(body), headers: { authorization: `Bearer ${gateway}` }, close: false });
    const pipelined = await same([keepAlive({ key: key.key }) + keepAlive({ key: revoked.key }) + keepAlive({ key: 'junk' }) + post({ key: key.key })]);
    expect(pipelined.raw.match(/HTTP\/1\.1 200/g)).toHaveLength(4);
    // Invalid JSON closes the connection: the request after it is not answered, by either.
    const broken = await same([keepAlive({ key: key.key }) + http({ body: '{', headers: { authorization: `Bearer ${gateway}` }, close: false }) + post({ key: key.key })]);
    expect(broken.raw.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 200', 'HTTP/1.1 400']);
    await same([http({ body: json, headers: { authorization: `Bearer ${gateway}` }, version: 'HTTP/1.0', close: false })]);
    await same([post({ key: key.key }, { expect: '100-continue' })]);
  });

  it('leaves other methods and paths to Fastify', async () => {
    const json = JSON.stringify({ key: key.key });
    const auth = { authorization: `Bearer ${gateway}` };
    const variants = [
      http({ method: 'GET', headers: auth }),
      http({ method: 'HEAD', headers: auth }),
      http({ method: 'PUT', body: json, headers: auth }),
      http({ path: `${PATH}/`, body: json, headers: auth }),
      http({ path: `${PATH}?trace=1`, body: json, headers: auth }),
      http({ path: '/v1/keys/verify2', body: json, headers: auth }),
      http({ path: '/V1/KEYS/VERIFY', body: json, headers: auth }),
    ];
    const statuses: number[] = [];
    for (const request of variants) statuses.push(statusOf((await same([request])).raw));
    // GET and HEAD match GET /v1/keys/:id, which needs keys:read.
    expect(statuses).toEqual([403, 403, 404, 200, 200, 404, 404]);
  });

  describe('vault reads', () => {
    const get = (path: string, token: string | null) =>
      http({ method: 'GET', path, headers: { authorization: token === null ? undefined : `Bearer ${token}` } });

    it('answers cached reads with the same bytes as the route, without the route, and counts every read', async () => {
      const actor = { actor: ctx.rootTokenId };
      await ctx.secrets.put(actor, 'lane/app/db', { value: 'first-value' });
      await ctx.secrets.put(actor, 'lane/app/db', { value: { user: 'app', password: 'second-value' } });
      const reader = await ctx.token(['secrets:read']);
      // Neither the token nor the answer is cached yet: the lane leaves this one to the route.
      expect(statusOf((await same([get('/v1/secrets/lane/app/db', reader)])).raw)).toBe(200);
      const before = handled.get(fast.port) ?? 0;
      for (let i = 0; i < 3; i++) {
        const { raw } = await same([get('/v1/secrets/lane/app/db', reader)]);
        expect(statusOf(raw)).toBe(200);
        expect(bodyOf(raw)).toMatchObject({ path: 'lane/app/db', version: 2, value: { password: 'second-value' } });
      }
      expect(handled.get(fast.port) ?? 0).toBe(before);
      const readers = await ctx.secrets.readers('lane/app/db', {}, ctx.clock.now() - HOUR);
      // One uncached read and three cached ones on each server.
      expect(readers.total).toBe(8);
    });

    it('leaves queries, other paths, refusals and errors to the route, with the same answers', async () => {
      const reader = await ctx.token(['secrets:read']);
      const limited = await ctx.token(['secrets:read:lane/other/*']);
      const keysOnly = await ctx.token(['keys:read']);
      await same([get('/v1/secrets/lane/app/db', reader)]);
      await same([get('/v1/secrets/lane/app/db', limited)]);
      const before = handled.get(fast.port) ?? 0;
      const cases: Array<[string, string | null, number]> = [
        ['/v1/secrets/lane/app/db?stage=previous', reader, 200],
        ['/v1/secrets/lane/app/db?version=1', reader, 200],
        ['/v1/secrets/lane/app/db/versions', reader, 200],
        ['/v1/secrets/lane/app/db/', reader, 200],
        ['/v1/secrets/lane/app/%64b', reader, 200],
        ['/v1/secrets/lane/app/missing', reader, 404],
        ['/v1/secrets/Lane/App', reader, 400],
        ['/v1/secrets/lane/app/db', null, 401],
        ['/v1/secrets/lane/app/db', keysOnly, 403],
        ['/v1/secrets/lane/app/db', limited, 403],
      ];
      const statuses: number[] = [];
      for (const [path, token] of cases) statuses.push(statusOf((await same([get(path, token)])).raw));
      expect(statuses).toEqual(cases.map(([, , status]) => status));
      // On the lane's server too, every one that passed the guard reached the route's handler
      // (the bad path, the missing token and the two wrong scopes are refused in the guard).
      expect((handled.get(fast.port) ?? 0) - before).toBe(cases.length - 4);
    });

    it('stops answering from the lane the moment the secret changes', async () => {
      const reader = await ctx.token(['secrets:read']);
      await same([get('/v1/secrets/lane/app/db', reader)]);
      await same([get('/v1/secrets/lane/app/db', reader)]);
      await ctx.secrets.rollback({ actor: ctx.rootTokenId }, 'lane/app/db');
      const { raw } = await same([get('/v1/secrets/lane/app/db', reader)]);
      expect(bodyOf(raw)).toMatchObject({ version: 1, value: 'first-value' });
      await ctx.secrets.delete({ actor: ctx.rootTokenId }, 'lane/app/db');
      expect(statusOf((await same([get('/v1/secrets/lane/app/db', reader)])).raw)).toBe(404);
    });
  });

  it('follows the clock: expired keys and tokens', async () => {
    ctx.clock.advance(3 * HOUR);
    const { raw } = await same([post({ key: shortLived.key })]);
    expect(bodyOf(raw).code).toBe('EXPIRED');
    expect(bodyOf((await same([post({ key: rotated.key })])).raw).code).toBe('EXPIRED');
    const refused = await same([post({ key: key.key }, {}, shortToken)]);
    expect(statusOf(refused.raw)).toBe(401);
    expect(refused.audit).toMatchObject([{ action: 'auth.failed', data: { reason: 'expired' } }]);
  });

  it('counts the same requests, outcomes and timings as the Fastify route', async () => {
    const lines = async (target: Target) =>
      (await target.metrics.render())
        .split('\n')
        .filter((line) => /^keysmith_(verifications_total|http_requests_total|verify_duration_seconds_count)\b/.test(line))
        .sort();
    const counted = await lines(fast);
    expect(counted.length).toBeGreaterThan(5);
    expect(counted).toEqual(await lines(plain));
  });
});
