/**
 * Red team of the issue 9 hardening, with the narrowest tokens that could try each hole, on both
 * store dialects. Each case is a hole the hardening left open, refused since:
 *
 * - a placeholder in an http connector's host, spelt so the text pattern missed it
 *   (`https:/{{admin}}.vendor.test`): the admin secret went into a DNS name;
 * - a value the run read, echoed by a vendor split across lines, spaced out, or base64- or
 *   hex-encoded while shorter than the generic run length: it reached a `rotation:read` token in
 *   the run's `error`;
 * - an http create template whose `id` is the new key (`id: $.secret`): the new credential went
 *   into the run's `vendorId`, shown to every `rotation:read` token, and into the revoke URL;
 * - a postgres connector, whose host is in a vault value and so never met the egress check: an
 *   author that can write its own target made the server connect to loopback (its own database,
 *   where trust authentication may let it in) or to a metadata address;
 * - a command connector's `env` naming a proxy (HTTPS_PROXY, http_proxy, ALL_PROXY), the TLS
 *   trust or OpenSSL configuration, the resolver's aliases or glibc tunables: the operator's
 *   program then sent its traffic (and its credentials) where the policy chose;
 * - a NUL byte in `POST /v1/rotations` `key` or `secret`, or in `GET /v1/rotations?target=`:
 *   PostgreSQL refused the text and the caller got a 500;
 * - behind a proxy (KEYSMITH_TRUST_PROXY), the client's own X-Forwarded-For entry was taken as its
 *   address: anyone could lock a victim out (the auth-failure throttle) or pass a key's IP
 *   allowlist.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RotationRunDetailWire } from '../../src/contract/index.js';
import { describeEachDialect } from '../support/databases.js';
import type { TestContext } from '../support/context.js';
import { drive } from '../support/rotation.js';
import { writeProgram } from '../support/programs.js';
import { expectProblem, problemFields, unique, unknownKey, useContext } from '../http/helpers.js';

const ADMIN = 'adm-Tok3n-9f8e7d';
const NEW_KEY = 'sk-new-Vk29fhQ0';

/** A vendor that refuses every create, quoting the admin token it was sent in the way the path asks. */
let vendor: Server;
let vendorPort = 0;
beforeAll(async () => {
  vendor = createServer((req, res) => {
    if (req.url?.startsWith('/same/')) {
      res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ secret: NEW_KEY, id: NEW_KEY }));
      return;
    }
    const admin = (req.headers.authorization ?? '').replace(/^Bearer /, '');
    const quoted = req.url?.startsWith('/split/')
      ? `token ${admin.slice(0, 8)}\n${admin.slice(8)} is not valid`
      : req.url?.startsWith('/spaced/')
        ? `token ${admin.split('').join(' ')} is not valid`
        : req.url?.startsWith('/base64/')
          ? `token ${Buffer.from(admin).toString('base64')} is not valid`
          : `token ${Buffer.from(admin).toString('hex')} is not valid`;
    res.writeHead(400, { 'content-type': 'text/plain' }).end(quoted);
  });
  await new Promise<void>((resolve) => vendor.listen(0, '127.0.0.1', resolve));
  vendorPort = (vendor.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((resolve) => vendor.close(() => resolve())));

function httpPolicy(name: string, createUrl: string, base = `http://127.0.0.1:${vendorPort}`): Record<string, unknown> {
  return {
    name,
    target: { secret: `apps/${name}` },
    schedule: { every: '30d' },
    overlap: '1h',
    connector: {
      type: 'http',
      settings: {
        adminSecret: `vendors/${name}/admin`,
        create: { url: createUrl, headers: { Authorization: 'Bearer {{admin}}' }, key: '$.secret', id: '$.id' },
        test: { url: `${base}/me` },
        revoke: { url: `${base}/keys/{{vendorId}}` },
      },
    },
  };
}

/** What the policy legitimately needs: rotation, its target, its admin secret. */
function authorScopes(name: string): string[] {
  return ['rotation:write', 'rotation:run', `secrets:read:apps/${name}`, `secrets:write:apps/${name}`, `secrets:read:vendors/${name}/admin`];
}

describeEachDialect('red team: http connector templates', (dialect) => {
  const ctx = useContext(dialect, { egress: { allow: ['*.vendor.test:443', '127.0.0.1:*'], resolver: async () => [{ address: '93.184.216.34', family: 4 }] } });

  it('refuses a placeholder in the host however the URL spells the authority', async () => {
    for (const url of ['https:/{{admin}}.vendor.test/keys', 'https:\\\\{{admin}}.vendor.test/keys', 'https:{{admin}}.vendor.test/keys', ' https://{{admin}}.vendor.test/keys', 'https://api.vendor.test{{admin}}/keys']) {
      const name = unique('host');
      const token = await ctx().token(authorScopes(name));
      const res = await ctx().request({ method: 'PUT', url: `/v1/rotation/policies/${name}`, body: { policy: httpPolicy(name, url, 'https://api.vendor.test') }, token });
      const problem = expectProblem(res, 422, 'ERR_ROTATION_POLICY_INVALID');
      expect(problemFields(problem), url).toEqual(['policy.connector.settings.create.url']);
      expect(problem.detail).toContain('create.url may not put a placeholder in the host');
    }
    // A placeholder in the path is what templates are for.
    const name = unique('path');
    const token = await ctx().token(authorScopes(name));
    const ok = await ctx().request({ method: 'PUT', url: `/v1/rotation/policies/${name}`, body: { policy: httpPolicy(name, 'https://api.vendor.test/keys/{{runId}}', 'https://api.vendor.test') }, token });
    expect(ok.statusCode, ok.body).toBe(201);
  });

  it("never shows a rotation:read token the admin secret a vendor echoes split, spaced, base64- or hex-encoded", async () => {
    const reader = await ctx().token(['rotation:read']);
    for (const form of ['split', 'spaced', 'base64', 'hex']) {
      const name = unique(form);
      const token = await ctx().token(authorScopes(name));
      const put = await ctx().request({ method: 'PUT', url: `/v1/rotation/policies/${name}`, body: { policy: httpPolicy(name, `http://127.0.0.1:${vendorPort}/${form}/keys`) }, token });
      expect(put.statusCode, put.body).toBe(201);
      await ctx().secrets.put({ actor: 'prn_admin' }, `vendors/${name}/admin`, { value: ADMIN });
      await ctx().secrets.put({ actor: 'prn_admin' }, `apps/${name}`, { value: 'current-value-1234' });
      const started = await ctx().request({ method: 'POST', url: '/v1/rotations', body: { secret: `apps/${name}` }, token });
      expect(started.statusCode, started.body).toBe(201);
      const id = (started.json() as { id: string }).id;
      await drive(ctx(), id, { advance: true, until: (run) => run.status !== 'running' });
      const shown = await ctx().request({ method: 'GET', url: `/v1/rotations/${id}`, token: reader });
      expect(shown.statusCode).toBe(200);
      const run = shown.json() as RotationRunDetailWire;
      expect(run.status, form).toBe('failed');
      expect(run.error, form).toContain('answered 400');
      const everything = JSON.stringify(run);
      for (const leak of [ADMIN, ADMIN.slice(8), ADMIN.split('').join(' '), Buffer.from(ADMIN).toString('base64'), Buffer.from(ADMIN).toString('hex')]) {
        expect(everything, `${form}: ${leak}`).not.toContain(leak);
      }
    }
  });
});

describeEachDialect('red team: the new credential as its vendor id', (dialect) => {
  const ctx = useContext(dialect, { egress: { allow: ['127.0.0.1:*'] } });

  it('fails a create whose vendor id is the new credential, before it is stored or shown', async () => {
    const reader = await ctx().token(['rotation:read']);
    const name = unique('same');
    const token = await ctx().token(authorScopes(name));
    const policy = httpPolicy(name, `http://127.0.0.1:${vendorPort}/same/keys`) as { connector: { settings: Record<string, unknown> } };
    policy.connector.settings = { create: { url: `http://127.0.0.1:${vendorPort}/same/keys`, key: '$.secret', id: '$.secret' }, test: { url: `http://127.0.0.1:${vendorPort}/me` }, revoke: { url: `http://127.0.0.1:${vendorPort}/keys/{{vendorId}}` } };
    const put = await ctx().request({ method: 'PUT', url: `/v1/rotation/policies/${name}`, body: { policy }, token });
    expect(put.statusCode, put.body).toBe(201);
    await ctx().secrets.put({ actor: 'prn_admin' }, `apps/${name}`, { value: 'current-value-1234' });
    const started = await ctx().request({ method: 'POST', url: '/v1/rotations', body: { secret: `apps/${name}` }, token });
    expect(started.statusCode, started.body).toBe(201);
    const id = (started.json() as { id: string }).id;
    await drive(ctx(), id, { advance: true, until: (run) => run.status !== 'running' });
    const run = (await ctx().request({ method: 'GET', url: `/v1/rotations/${id}`, token: reader })).json() as RotationRunDetailWire;
    expect(JSON.stringify(run)).not.toContain(NEW_KEY);
    expect(run.status).toBe('failed');
    expect(run.error).toContain('the vendor id is the new credential');
    expect((await ctx().secrets.versions(`apps/${name}`)).versions).toHaveLength(1);
  });
});

describeEachDialect('red team: the postgres connector and egress', (dialect) => {
  const ctx = useContext(dialect, { egress: { allow: ['db.vendor.test:5432'], resolver: async () => [{ address: '127.0.0.1', family: 4 }] } });

  it('refuses an admin URL whose host the egress allowlist does not list, before connecting', async () => {
    for (const admin of ['postgres://postgres@127.0.0.1:5432/postgres', 'postgres://postgres@169.254.169.254:80/x', 'postgres://postgres@db.vendor.test:5432/postgres']) {
      const name = unique('pg');
      const token = await ctx().token(['rotation:write', 'rotation:run', 'rotation:read', `secrets:read:apps/${name}`, `secrets:write:apps/${name}`]);
      // The narrowest author: its own target, which it can write, is also its admin secret.
      const policy = {
        name,
        target: { secret: `apps/${name}` },
        schedule: { every: '30d' },
        overlap: '1h',
        connector: { type: 'postgres', settings: { adminSecret: `apps/${name}`, roles: ['ks_red_absent_a', 'ks_red_absent_b'], timeout: '2s' } },
      };
      const put = await ctx().request({ method: 'PUT', url: `/v1/rotation/policies/${name}`, body: { policy }, token });
      expect(put.statusCode, put.body).toBe(201);
      const written = await ctx().request({ method: 'PUT', url: `/v1/secrets/apps/${name}`, body: { value: admin }, token });
      expect(written.statusCode, written.body).toBe(201);
      const started = await ctx().request({ method: 'POST', url: '/v1/rotations', body: { secret: `apps/${name}` }, token });
      expect(started.statusCode, started.body).toBe(201);
      const id = (started.json() as { id: string }).id;
      await drive(ctx(), id, { advance: true, until: (run) => run.status !== 'running' });
      const run = (await ctx().request({ method: 'GET', url: `/v1/rotations/${id}`, token })).json() as RotationRunDetailWire;
      expect(run.status, admin).toBe('failed');
      // Refused by the allowlist (not "role does not exist", which needs a connection), and not retried.
      expect(run.error, admin).toMatch(/ERR_CONNECTOR_EGRESS_REFUSED|egress to .* is refused/);
      expect(run.error, admin).not.toContain('does not exist');
      expect(run.timeline.filter((step) => step.outcome === 'retry'), admin).toEqual([]);
    }
  });
});

describeEachDialect('red team: the address behind a proxy', (dialect) => {
  const PROXY = '10.0.0.2';
  const VICTIM = '198.51.100.7';
  const ATTACKER = '203.0.113.50';
  const ctx = useContext(dialect, { trustProxy: true, authFailures: { windowMs: 60_000, limit: 3, maxAddresses: 100 } });

  /** A call through the proxy, which appends the address it was called from to X-Forwarded-For. */
  const viaProxy = (context: TestContext, from: string, claimed: string | undefined, token?: string) =>
    context.app.inject({
      method: 'GET',
      url: '/v1/keys?limit=1',
      remoteAddress: PROXY,
      headers: { 'x-forwarded-for': claimed === undefined ? from : `${claimed}, ${from}`, ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
    });

  it("counts failures by the address the proxy saw, so a forged X-Forwarded-For locks nobody else out", async () => {
    for (let i = 0; i < 5; i++) await viaProxy(ctx(), ATTACKER, VICTIM, unknownKey('ksm'));
    expectProblem(await viaProxy(ctx(), ATTACKER, undefined, ctx().rootToken), 429, 'ERR_RATE_LIMITED');
    expect((await viaProxy(ctx(), VICTIM, undefined, ctx().rootToken)).statusCode).toBe(200);
  });

  it("holds a token's IP allowlist to the address the proxy saw, not one the caller claims", async () => {
    const pinned = (await ctx().keys.issueToken({ actor: 'system:test' }, ['*'], { scopes: ['keys:read'], owner: 'ops', ttl: '1h', ipAllowlist: [`${VICTIM}/32`] })).key;
    expect((await viaProxy(ctx(), VICTIM, undefined, pinned)).statusCode).toBe(200);
    expectProblem(await viaProxy(ctx(), '192.0.2.99', VICTIM, pinned), 401, 'ERR_UNAUTHENTICATED');
  });
});

const programDir = mkdtempSync(join(tmpdir(), 'keysmith-red-'));
const VENDOR_CLI = writeProgram(programDir, 'vendor-cli.cjs', `process.stdout.write('{}')`);
afterAll(() => rmSync(programDir, { recursive: true, force: true }));

describeEachDialect("red team: a registered program's environment", (dialect) => {
  const ctx = useContext(dialect, { programs: [VENDOR_CLI] });
  const put = async (env: Record<string, string>) => {
    const name = unique('env');
    const token = await ctx().token(['rotation:write', 'rotation:run', `secrets:read:apps/${name}`, `secrets:write:apps/${name}`]);
    const policy = { name, target: { secret: `apps/${name}` }, schedule: { every: '30d' }, overlap: '1h', connector: { type: 'command', settings: { program: VENDOR_CLI.name, env } } };
    return ctx().request({ method: 'PUT', url: `/v1/rotation/policies/${name}`, body: { policy }, token });
  };

  it('refuses variables that send the program\'s traffic elsewhere or change whom it trusts', async () => {
    for (const name of ['HTTPS_PROXY', 'http_proxy', 'ALL_PROXY', 'no_proxy', 'OPENSSL_CONF', 'SSL_CERT_FILE', 'SSL_CERT_DIR', 'CURL_CA_BUNDLE', 'REQUESTS_CA_BUNDLE', 'HOSTALIASES', 'RES_OPTIONS', 'LOCALDOMAIN', 'GLIBC_TUNABLES', 'MALLOC_CHECK_', 'HOME', 'XDG_CONFIG_HOME']) {
      const problem = expectProblem(await put({ [name]: 'http://attacker.test:8080' }), 422, 'ERR_ROTATION_POLICY_INVALID');
      expect(problemFields(problem), name).toEqual([`policy.connector.settings.env.${name}`]);
    }
    const ok = await put({ VENDOR_REGION: 'eu' });
    expect(ok.statusCode, ok.body).toBe(201);
  });
});

describeEachDialect('red team: control characters in the rotation run routes', (dialect) => {
  const ctx = useContext(dialect);

  it('answers a NUL in a run target with a 400, not a 500', async () => {
    const token = await ctx().token(['rotation:run', 'rotation:read', 'keys:rotate', 'secrets:write']);
    for (const body of [{ key: 'key_\u0000' }, { key: `key_${'A'.repeat(21)}\u0000` }, { secret: 'apps/\u0000' }]) {
      const problem = expectProblem(await ctx().request({ method: 'POST', url: '/v1/rotations', body, token }), 400, 'ERR_INVALID_REQUEST');
      expect(problem.detail).not.toContain('\u0000');
    }
    expectProblem(await ctx().request({ method: 'GET', url: '/v1/rotations?target=apps%2F%00', token }), 400, 'ERR_INVALID_REQUEST');
  });
});
