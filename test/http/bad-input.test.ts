/**
 * Malformed input of every kind: each answer is a 4xx problem+json that says what to fix, never
 * a 500, and nothing is half-written.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { LightMyRequestResponse } from 'fastify';
import { describeEachDialect } from '../support/databases.js';
import {
  countRows,
  createKey,
  expectNothingWritten,
  expectProblem,
  idOf,
  problemFields,
  seededRandom,
  unknownKeyId,
  useContext,
} from './helpers.js';

const MIB = 1024 * 1024;

describeEachDialect('bad input', (dialect) => {
  const ctx = useContext(dialect);

  /** A request with a raw payload and content type, under the root token. */
  const raw = (method: 'POST' | 'PATCH', url: string, payload: string | Buffer, contentType: string | null) =>
    ctx().request({ method, url, payload, headers: contentType === null ? {} : { 'content-type': contentType } });

  /** A management token the token routes below aim at. */
  let tokenId: string;
  beforeAll(async () => {
    tokenId = idOf(await ctx().token(['keys:read']));
  });

  /** Body-taking routes, with a target key id filled in per test. */
  const bodyRoutes = (id: string): Array<['POST' | 'PATCH', string]> => [
    ['POST', '/v1/keys'],
    ['POST', '/v1/keys/verify'],
    ['PATCH', `/v1/keys/${id}`],
    ['POST', `/v1/keys/${id}/rotate`],
    ['POST', `/v1/keys/${id}/revoke`],
    ['POST', `/v1/keys/${id}/disable`],
    ['POST', '/v1/tokens'],
    ['POST', `/v1/tokens/${tokenId}/rotate`],
    ['POST', `/v1/tokens/${tokenId}/revoke`],
  ];

  describe('bodies that are not JSON objects', () => {
    it('answers 400 ERR_INVALID_JSON to malformed JSON on every body route', async () => {
      const { id } = await createKey(ctx());
      await expectNothingWritten(ctx(), async () => {
        for (const [method, url] of bodyRoutes(id)) {
          for (const payload of ['{"owner": "a",', '{owner: "a"}', "{'owner':'a'}", '{"owner":"a"}}', 'nul', '\u0000']) {
            const problem = expectProblem(await raw(method, url, payload, 'application/json'), 400, 'ERR_INVALID_JSON', 'invalid_request');
            expect(problem.detail).toMatch(/JSON/);
          }
        }
      });
    });

    it('answers 400 to an empty body sent as JSON', async () => {
      const problem = expectProblem(await raw('POST', '/v1/keys', '', 'application/json'), 400, 'ERR_INVALID_JSON');
      expect(problem.detail).toMatch(/empty/);
    });

    it('answers 400 to JSON that is not an object, including a literal null', async () => {
      const { id } = await createKey(ctx());
      const accepted: string[] = [];
      const before = await countRows(ctx());
      for (const [method, url] of bodyRoutes(id)) {
        for (const payload of ['null', '[]', '"owner"', '42', 'true', '[{"owner":"a"}]']) {
          const res = await raw(method, url, payload, 'application/json');
          if (res.statusCode !== 400) accepted.push(`${method} ${url.replace(id, ':id')} ${payload} -> ${res.statusCode}`);
          else expectProblem(res, 400, 'ERR_INVALID_REQUEST', 'invalid_request');
        }
      }
      expect(accepted).toEqual([]);
      expect(await countRows(ctx())).toEqual(before);
    });

    it('answers 415 to text/plain and other content types', async () => {
      const { id } = await createKey(ctx());
      await expectNothingWritten(ctx(), async () => {
        for (const [method, url] of bodyRoutes(id)) {
          for (const type of ['text/plain', 'application/xml', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
            const res = await raw(method, url, '{"owner":"a"}', type);
            const problem = expectProblem(res, 415, 'ERR_UNSUPPORTED_MEDIA_TYPE', 'unsupported_media_type');
            expect(problem.detail).toContain('application/json');
          }
        }
      });
    });

    it('answers 413 to a body over 1 MiB', async () => {
      const { id } = await createKey(ctx());
      const big = JSON.stringify({ owner: 'x', purpose: 'p'.repeat(MIB) });
      await expectNothingWritten(ctx(), async () => {
        for (const [method, url] of bodyRoutes(id)) {
          const problem = expectProblem(await raw(method, url, big, 'application/json'), 413, 'ERR_PAYLOAD_TOO_LARGE', 'payload_too_large');
          expect(problem.detail).toContain('1 MiB');
        }
      });
    });

    it('accepts a body just under 1 MiB as far as size goes', async () => {
      const almost = JSON.stringify({ owner: 'x', purpose: 'p'.repeat(MIB - 100) });
      const problem = expectProblem(await raw('POST', '/v1/keys', almost, 'application/json'), 400, 'ERR_INVALID_REQUEST');
      expect(problemFields(problem)).toContain('purpose');
    });

    it('refuses prototype pollution attempts without polluting anything', async () => {
      await expectNothingWritten(ctx(), async () => {
        for (const payload of ['{"owner":"a","__proto__":{"polluted":true}}', '{"owner":"a","constructor":{"prototype":{"polluted":true}}}']) {
          const res = await raw('POST', '/v1/keys', payload, 'application/json');
          expect(res.statusCode).toBe(400);
          expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
        }
      });
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    });

    it('survives deeply nested JSON', async () => {
      const deep = '{"owner":"a","labels":' + '{"a":'.repeat(5000) + '1' + '}'.repeat(5000) + '}';
      const res = await raw('POST', '/v1/keys', deep, 'application/json');
      expect(res.statusCode).toBeGreaterThanOrEqual(400);
      expect(res.statusCode).toBeLessThan(500);
    });
  });

  describe('fields', () => {
    it('names an unknown field, top-level or nested', async () => {
      await expectNothingWritten(ctx(), async () => {
        const top = expectProblem(await ctx().request({ method: 'POST', url: '/v1/keys', body: { owner: 'a', colour: 'red' } }), 400, 'ERR_INVALID_REQUEST');
        expect(top.detail).toContain('colour');
        expect(problemFields(top)).toContain('colour');
        const nested = expectProblem(
          await ctx().request({ method: 'POST', url: '/v1/keys', body: { owner: 'a', rateLimit: { limit: 1, window: '1m', burst: 5 } } }),
          400,
          'ERR_INVALID_REQUEST',
        );
        expect(problemFields(nested)[0]).toMatch(/rateLimit.*burst/);
      });
    });

    it.each([
      [{ owner: 5 }, 'owner'],
      [{ owner: null }, 'owner'],
      [{ owner: 'a', scopes: 'x' }, 'scopes'],
      [{ owner: 'a', scopes: [5] }, 'scopes'],
      [{ owner: 'a', labels: ['team=a'] }, 'labels'],
      [{ owner: 'a', labels: { team: 5 } }, 'labels'],
      [{ owner: 'a', env: 1 }, 'env'],
      [{ owner: 'a', ttl: 30 }, 'ttl'],
      [{ owner: 'a', ipAllowlist: '10.0.0.0/8' }, 'ipAllowlist'],
      [{ owner: 'a', rateLimit: 5 }, 'rateLimit'],
      [{ owner: 'a', rateLimit: { limit: '5', window: '1m' } }, 'rateLimit'],
      [{ owner: 'a', purpose: { text: 'x' } }, 'purpose'],
    ])('refuses wrong types %j with a 400 naming %s', async (body, field) => {
      await expectNothingWritten(ctx(), async () => {
        const problem = expectProblem(await ctx().request({ method: 'POST', url: '/v1/keys', body }), 400, 'ERR_INVALID_REQUEST', 'invalid_request');
        expect(`${problem.detail} ${problemFields(problem).join(' ')}`).toContain(field);
      });
    });

    it.each([
      [{ owner: 'o'.repeat(201) }, 'owner'],
      [{ owner: 'a', purpose: 'p'.repeat(501) }, 'purpose'],
      [{ owner: 'a', labels: { team: 'v'.repeat(257) } }, 'labels'],
      [{ owner: 'a', labels: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`l${i}`, 'v'])) }, 'labels'],
      [{ owner: 'a', scopes: Array.from({ length: 51 }, (_, i) => `s:${i}`) }, 'scopes'],
      [{ owner: 'a', scopes: [`s:${'x'.repeat(127)}`] }, 'scopes'],
      [{ owner: 'a', ipAllowlist: Array.from({ length: 101 }, () => '10.0.0.1') }, 'ipAllowlist'],
      [{ owner: 'a', ttl: '1'.repeat(17) }, 'ttl'],
    ])('refuses over-long input %# with a 400 naming %s', async (body, field) => {
      await expectNothingWritten(ctx(), async () => {
        const problem = expectProblem(await ctx().request({ method: 'POST', url: '/v1/keys', body }), 400, 'ERR_INVALID_REQUEST');
        expect(`${problem.detail} ${problemFields(problem).join(' ')}`).toContain(field);
      });
    });

    it('says how long a string may be', async () => {
      const problem = expectProblem(await ctx().request({ method: 'POST', url: '/v1/keys', body: { owner: 'o'.repeat(201) } }), 400);
      expect(problem.detail).toMatch(/200/);
    });

    it.each([
      [{ owner: 'team\nb' }, 'owner'],
      [{ owner: 'team\u0000' }, 'owner'],
      [{ owner: '\u001b[31mred' }, 'owner'],
      [{ owner: 'a', purpose: 'line1\r\nline2' }, 'purpose'],
      [{ owner: 'a', purpose: 'bell\u0007' }, 'purpose'],
      [{ owner: 'a', labels: { team: 'a\tb' } }, 'labels'],
      [{ owner: 'a', labels: { team: 'del\u007f' } }, 'labels'],
    ])('refuses control characters in %j', async (body, field) => {
      await expectNothingWritten(ctx(), async () => {
        const problem = expectProblem(await ctx().request({ method: 'POST', url: '/v1/keys', body }), 400, 'ERR_INVALID_REQUEST');
        expect(`${problem.detail} ${problemFields(problem).join(' ')}`).toContain(field);
      });
    });

    it.each([
      ['an object', { X: { nested: 1 } }],
      ['null', { X: null }],
      ['a number', { X: 5 }],
      ['an over-long name', { ['a'.repeat(100)]: 'v' }],
      ['an upper-case name with an over-long value', { Team: 'v'.repeat(300) }],
      ['an upper-case name with a control character', { Team: 'a\u0000b' }],
    ])('refuses a label whose name breaks the pattern, with %s as its value', async (_label, labels) => {
      await expectNothingWritten(ctx(), async () => {
        const res = await ctx().request({ method: 'POST', url: '/v1/keys', body: { owner: 'a', labels } });
        const problem = expectProblem(res, 400, 'ERR_INVALID_REQUEST');
        expect(`${problem.detail} ${problemFields(problem).join(' ')}`).toContain('labels');
      });
    });

    it('refuses control characters in PATCH, revoke and token fields too', async () => {
      const { id } = await createKey(ctx());
      await expectNothingWritten(ctx(), async () => {
        expectProblem(await ctx().request({ method: 'PATCH', url: `/v1/keys/${id}`, body: { purpose: 'x\u0000' } }), 400, 'ERR_INVALID_REQUEST');
        expectProblem(await ctx().request({ method: 'PATCH', url: `/v1/keys/${id}`, body: { labels: { a: '\n' } } }), 400, 'ERR_INVALID_REQUEST');
        expectProblem(await ctx().request({ method: 'POST', url: `/v1/keys/${id}/revoke`, body: { reason: 'x\u001b' } }), 400, 'ERR_INVALID_REQUEST');
        expectProblem(await ctx().request({ method: 'POST', url: '/v1/tokens', body: { scopes: ['keys:read'], owner: 'x\n' } }), 400, 'ERR_INVALID_REQUEST');
        expectProblem(await ctx().request({ method: 'POST', url: '/v1/keys/verify', body: { key: 'x', userAgent: 'ua\u0000' } }), 400, 'ERR_INVALID_REQUEST');
      });
    });

    it('keeps unicode that is not a control character', async () => {
      const created = await createKey(ctx(), { owner: 'équipe-支付-🚀', purpose: 'naïve café', labels: { team: 'ünïcødé' } });
      expect(created).toMatchObject({ owner: 'équipe-支付-🚀', purpose: 'naïve café', labels: { team: 'ünïcødé' } });
    });
  });

  describe('ids and routes', () => {
    const idRoutes = (id: string): Array<['GET' | 'POST' | 'PATCH', string, unknown]> => [
      ['GET', `/v1/keys/${id}`, undefined],
      ['GET', `/v1/keys/${id}/usage`, undefined],
      ['PATCH', `/v1/keys/${id}`, { purpose: 'x' }],
      ['POST', `/v1/keys/${id}/rotate`, {}],
      ['POST', `/v1/keys/${id}/revoke`, {}],
      ['POST', `/v1/keys/${id}/disable`, {}],
      ['POST', `/v1/keys/${id}/enable`, {}],
      ['POST', `/v1/keys/${id}/retire`, {}],
    ];

    it('answers 404 ERR_KEY_NOT_FOUND for a well-formed unknown id on every id route', async () => {
      const id = unknownKeyId();
      await expectNothingWritten(ctx(), async () => {
        for (const [method, url, body] of idRoutes(id)) {
          const problem = expectProblem(await ctx().request({ method, url, body }), 404, 'ERR_KEY_NOT_FOUND', 'not_found');
          expect(problem.detail).toContain(id);
        }
      });
    });

    it('answers 400 for a malformed id on every id route', async () => {
      await expectNothingWritten(ctx(), async () => {
        for (const bad of ['nope', 'key_short', `key_${'A'.repeat(23)}`, `key_${'-'.repeat(22)}`, 'KEY_AAAAAAAAAAAAAAAAAAAAAA', '%00', encodeURIComponent("key_' OR 1=1 --")]) {
          for (const [method, url, body] of idRoutes(bad)) {
            const res = await ctx().request({ method, url, body });
            const problem = expectProblem(res, 400, 'ERR_INVALID_REQUEST', 'invalid_request');
            expect(problem.detail).toContain('id');
          }
        }
      });
    });

    it('answers 404 problem+json for an unknown route', async () => {
      for (const url of ['/v2/keys', '/v1/key', '/v1/keys/verify/now', '/', '/v1', '/v1/vault']) {
        const problem = expectProblem(await ctx().request({ method: 'GET', url }), 404, 'ERR_ROUTE_NOT_FOUND', 'not_found');
        expect(problem.detail).toContain('/openapi.json');
      }
    });

    it('answers 404 or 405 for a wrong method', async () => {
      const { id } = await createKey(ctx());
      for (const [method, url] of [
        ['DELETE', `/v1/keys/${id}`],
        ['PUT', `/v1/keys/${id}`],
        ['PUT', '/v1/keys'],
        ['DELETE', '/v1/audit'],
        ['PATCH', '/v1/tokens'],
      ] as const) {
        const res = await ctx().request({ method, url });
        expect([404, 405]).toContain(res.statusCode);
        expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      }
      expect((await ctx().request({ method: 'GET', url: `/v1/keys/${id}` })).json().status).toBe('active');
    });

    it('does not mistake GET /v1/keys/verify for a key id', async () => {
      const res = await ctx().request({ method: 'GET', url: '/v1/keys/verify' });
      expect([400, 404, 405]).toContain(res.statusCode);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    });

    it('answers 400 naming the parameter for limit=0 or limit=abc', async () => {
      for (const url of ['/v1/keys?limit=0', '/v1/keys?limit=abc', '/v1/audit?limit=0', '/v1/audit?limit=abc', '/v1/keys?limit=', '/v1/keys?limit=1e3']) {
        const problem = expectProblem(await ctx().request({ method: 'GET', url }), 400, 'ERR_INVALID_REQUEST', 'invalid_request');
        expect(problem.detail).toContain('limit');
      }
    });

    it('copes with a very long URL', async () => {
      const res = await ctx().request({ method: 'GET', url: `/v1/keys/${'a'.repeat(5000)}` });
      expect(res.statusCode).toBeGreaterThanOrEqual(400);
      expect(res.statusCode).toBeLessThan(500);
      const query = await ctx().request({ method: 'GET', url: `/v1/keys?owner=${'a'.repeat(5000)}` });
      expectProblem(query, 400, 'ERR_INVALID_REQUEST');
    });
  });

  describe('fuzz', () => {
    let lastId: string | undefined;
    const FIELDS = [
      'owner', 'purpose', 'env', 'prefix', 'scopes', 'labels', 'ttl', 'expiresAt', 'ipAllowlist', 'rateLimit',
      'key', 'ip', 'userAgent', 'overlap', 'reason', 'limit', 'window', '__proto__', 'constructor', '',
    ];
    const STRINGS = [
      '', ' ', 'a', 'live', 'test', 'ks', '0d', '-5d', '1h', '90d', '91d', '999999999d', '24h', '1m', 'abc',
      '10.0.0.0/8', '2001:db8::/32', '::', '0.0.0.0/0', '300.0.0.1', '::ffff:1.2.3.4', 'fe80::1%eth0',
      '2026-11-02T00:00:00Z', '1970-01-01T00:00:00Z', '+275760-09-13T00:00:00.000Z', '9999-12-31T23:59:59Z', 'NaN',
      'orders:read', 'orders:*', '*', 'keys:create', '\u0000', '\n', '\u202e', '\ud800', '🚀', 'null', '{}', '[]',
      "'; drop table api_keys; --", '%00', '../../etc/passwd', 'ks_live_', 'x'.repeat(300), 'é'.repeat(201),
    ];

    /** Property names off the schema's beaten path: upper case, long, odd. */
    const NAMES = ['Team', 'X', 'a'.repeat(80), 'é', 'with space', 'a\u0000b', '0', 'TTL', ...STRINGS.map((text) => text.slice(0, 20))];

    function generator(seed: number): () => unknown {
      const random = seededRandom(seed);
      const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
      const value = (depth: number): unknown => {
        const roll = random();
        if (roll < 0.3) return pick(STRINGS);
        if (roll < 0.4) return pick([0, -1, 1, 2, 1.5, 1e308, -1e308, 2 ** 31, 2 ** 53 + 1, Number.MAX_SAFE_INTEGER]);
        if (roll < 0.45) return pick([true, false, null]);
        if (roll < 0.55) return Array.from({ length: 1 + Math.floor(random() * 60) }, () => String.fromCodePoint(Math.floor(random() * 0x2fff))).join('');
        if (depth > 3) return pick(STRINGS);
        if (roll < 0.75) return Array.from({ length: Math.floor(random() * 4) }, () => value(depth + 1));
        return object(depth + 1);
      };
      const object = (depth: number): Record<string, unknown> => {
        const out: Record<string, unknown> = {};
        const count = Math.floor(random() * 5);
        for (let i = 0; i < count; i += 1) {
          const name = random() < 0.8 ? pick(FIELDS) : pick(NAMES);
          if (name === 'rateLimit' && random() < 0.5) out[name] = { limit: value(depth), window: value(depth) };
          else if (name === 'labels' && random() < 0.5) out[name] = { [pick(NAMES)]: value(depth), [pick(FIELDS)]: value(depth) };
          else out[name] = value(depth);
        }
        return out;
      };
      return () => (random() < 0.9 ? object(0) : value(0));
    }

    it('never answers 5xx to ~200 random bodies on create, verify, PATCH and rotate', async () => {
      const seed = 0x5eed;
      const next = generator(seed);
      const failures: string[] = [];
      for (let i = 0; i < 200; i += 1) {
        const body = next();
        const { id } = i % 10 === 0 || !lastId ? await createKey(ctx()) : { id: lastId };
        lastId = id;
        const routes: Array<['POST' | 'PATCH', string]> = [
          ['POST', '/v1/keys'],
          ['POST', '/v1/keys/verify'],
          ['PATCH', `/v1/keys/${id}`],
          ['POST', `/v1/keys/${id}/rotate`],
        ];
        const payload = JSON.stringify(body);
        for (const [method, url] of routes) {
          const res: LightMyRequestResponse = await ctx().request({ method, url, payload, headers: { 'content-type': 'application/json' } });
          if (res.statusCode >= 500 || (res.statusCode >= 400 && !/^application\/problem\+json/.test(String(res.headers['content-type'])))) {
            failures.push(`seed ${seed} #${i} ${method} ${url.replace(id, ':id')} ${payload.slice(0, 300)} -> ${res.statusCode} ${res.body.slice(0, 200)}`);
          }
        }
      }
      expect(failures).toEqual([]);
    });
  });
});
