import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConnectorError, HttpConnector, type ConnectorContext } from '../../src/rotation/connectors/index.js';
import { createEgress } from '../../src/outbound/index.js';
import { startFakeVendor, type FakeVendor } from '../support/fake-vendor.js';
import { adminContext, connectorError, vendorSettings } from '../support/rotation.js';

let vendor: FakeVendor;
// The fake vendor listens on 127.0.0.1: the allowlist must say so, as an operator's would.
const connector = new HttpConnector({ egress: createEgress({ allow: ['127.0.0.1:*'] }) });

function acmeSettings(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...vendorSettings(vendor), ...overrides };
}

function ctx(runId: string, settings = acmeSettings(), admin: string | Record<string, unknown> = vendor.adminToken): ConnectorContext {
  return adminContext(runId, settings, admin);
}

const caught = connectorError;

beforeAll(async () => {
  vendor = await startFakeVendor();
});
afterAll(async () => {
  await vendor.close();
});
beforeEach(() => {
  // Each test starts from a fresh account so key limits do not leak between tests.
  for (const key of vendor.activeKeys()) key.revoked = true;
  vendor.failNextRevocations(0);
  vendor.setDelay(0);
});

describe('http connector: settings', () => {
  it('accepts the vendor template', () => {
    expect(connector.validateSettings(acmeSettings())).toEqual([]);
  });

  it('names each problem', () => {
    const problems = connector.validateSettings({
      create: { url: 'http://api.example.com/keys', headers: { Authorization: 'Bearer {{key}}' }, key: 'secret' },
      test: { url: `${vendor.url}/me`, headers: { X: '{{pasword}}' }, expect: 999 },
      revoke: { method: 'TRACE', url: 'https://{{vendorId}}.example.com/' },
      extra: 1,
    });
    expect(problems).toEqual([
      'extra is not an http connector setting',
      'create.url must be https (plain http only to a loopback address)',
      'create: {{key}} is not known at this step',
      'create.key must be a path such as $.secret',
      'test.expect must be an HTTP status or a list of them',
      'test: unknown placeholder {{pasword}}',
      'revoke.method must be one of GET, POST, PUT, PATCH, DELETE',
      'revoke.url may not put a placeholder in the host',
    ]);
    expect(connector.validateSettings({ ...acmeSettings(), adminSecret: undefined })).toEqual(['adminSecret is required when a request uses {{admin}}']);
  });
});

describe('http connector against a vendor allowing two active keys', () => {
  it('rotates: create a second key, test it, revoke the old one, which then gets 401', async () => {
    const old = vendor.seedKey();
    const made = await connector.create(ctx('rot_cycle1'));
    expect(made.credential.vendorId).toMatch(/^vk_/);
    expect(made.credential.value).toMatch(/^sk_fake_/);
    expect(made.evidence).toMatchObject({ status: 201, vendorId: made.credential.vendorId, url: `${vendor.url}/keys` });
    expect(vendor.activeKeys().map((k) => k.id)).toEqual([old.id, made.credential.vendorId]);

    expect(await connector.set(ctx('rot_cycle1'), made.credential)).toMatchObject({ skipped: true });
    const tested = await connector.test(ctx('rot_cycle1'), made.credential);
    expect(tested).toEqual({ ok: true, evidence: expect.objectContaining({ status: 200 }) });
    // The overlap: the old key still works until it is revoked.
    expect((await connector.test(ctx('rot_cycle1'), { value: old.secret, vendorId: old.id })).ok).toBe(true);

    expect(await connector.revoke(ctx('rot_cycle1'), { vendorId: old.id, value: old.secret })).toMatchObject({ status: 204, vendorId: old.id });
    expect(vendor.activeKeys().map((k) => k.id)).toEqual([made.credential.vendorId]);
    const after = await connector.test(ctx('rot_cycle1'), { value: old.secret, vendorId: old.id });
    expect(after).toEqual({ ok: false, evidence: expect.objectContaining({ status: 401 }) });

    const trail = vendor.log.slice(-5).map((r) => `${r.method} ${r.path} ${r.credential} ${r.status}`);
    expect(trail).toEqual([
      'POST /keys admin:acme 201',
      `GET /me ${made.credential.vendorId} 200`,
      `GET /me ${old.id} 200`,
      `DELETE /keys/${old.id} admin:acme 204`,
      `GET /me ${old.id} 401`,
    ]);
  });

  it('refuses a third key clearly and not as retryable', async () => {
    vendor.seedKey();
    vendor.seedKey();
    const error = await caught(connector.create(ctx('rot_third')));
    expect(error).toMatchObject({ code: 'ERR_CONNECTOR_REJECTED', step: 'create', retryable: false });
    expect(error.message).toContain('answered 409');
    expect(error.message).toContain('at most 2 active keys');
    expect(vendor.activeKeys()).toHaveLength(2);
  });

  it('makes one key for a run however often create is retried', async () => {
    const first = await connector.create(ctx('rot_idem'));
    const again = await connector.create(ctx('rot_idem'));
    expect(again.credential).toEqual(first.credential);
    expect(vendor.activeKeys()).toHaveLength(1);
    const posts = vendor.log.filter((r) => r.method === 'POST' && r.idempotencyKey === 'rot_idem');
    expect(posts).toHaveLength(2);
    // A different run is a different key.
    const other = await connector.create(ctx('rot_idem2'));
    expect(other.credential.vendorId).not.toBe(first.credential.vendorId);
  });

  it('can leave the idempotency header out, or name it differently', async () => {
    await connector.create(ctx('rot_hdr', acmeSettings({ idempotencyHeader: 'X-Request-Id' })));
    expect(vendor.log.at(-1)!.idempotencyKey).toBeNull();
    await connector.create(ctx('rot_hdr2', acmeSettings({ idempotencyHeader: false })));
    expect(vendor.log.at(-1)!.idempotencyKey).toBeNull();
    expect(vendor.activeKeys()).toHaveLength(2);
  });

  it('makes a 503 on revoke a retryable error, and the retry succeeds', async () => {
    const old = vendor.seedKey();
    vendor.failNextRevocations(1);
    const error = await caught(connector.revoke(ctx('rot_503'), { vendorId: old.id }));
    expect(error).toMatchObject({ code: 'ERR_CONNECTOR_FAILED', step: 'revoke', retryable: true });
    expect(error.message).toContain('answered 503');
    expect(old.revoked).toBe(false);
    expect(await connector.revoke(ctx('rot_503'), { vendorId: old.id })).toMatchObject({ status: 204 });
    expect(old.revoked).toBe(true);
  });

  it('counts revoking a key the vendor no longer has as done', async () => {
    expect(await connector.revoke(ctx('rot_gone'), { vendorId: 'vk_nope' })).toMatchObject({ status: 404, alreadyGone: true });
  });

  it('says what is missing when revoke has no vendor id to put in the URL', async () => {
    const error = await caught(connector.revoke(ctx('rot_noid'), { value: 'sk_whatever' }));
    expect(error).toMatchObject({ code: 'ERR_CONNECTOR_FAILED', retryable: false });
    expect(error.message).toContain("vendor id");
  });

  it('reads the admin token out of a structured vault value with adminField', async () => {
    const settings = acmeSettings({ adminField: 'token' });
    const made = await connector.create(ctx('rot_field', settings, { token: vendor.adminToken, note: 'x' }));
    expect(made.credential.vendorId).toMatch(/^vk_/);
    const error = await caught(connector.create(ctx('rot_field2', acmeSettings(), { token: vendor.adminToken })));
    expect(error.code).toBe('ERR_CONNECTOR_SETTINGS_INVALID');
  });

  it('times out a vendor that does not answer, as retryable', async () => {
    vendor.setDelay(2_000);
    const error = await caught(connector.test(ctx('rot_slow', acmeSettings({ timeout: '1s' })), { value: 'sk_x' }));
    expect(error).toMatchObject({ code: 'ERR_CONNECTOR_TIMEOUT', step: 'test', retryable: true });
  });

  it('treats an unreachable vendor as retryable', async () => {
    const closed = await startFakeVendor();
    await closed.close();
    const settings = acmeSettings({ test: { url: `${closed.url}/me`, headers: { Authorization: 'Bearer {{key}}' } } });
    const error = await caught(connector.test(ctx('rot_down', settings), { value: 'sk_x' }));
    expect(error).toMatchObject({ code: 'ERR_CONNECTOR_FAILED', retryable: true });
    expect(error.message).toContain('ECONNREFUSED');
  });

  it('complains when the answer has no key where the template says', async () => {
    const settings = acmeSettings({ create: { ...(acmeSettings().create as object), key: '$.data.secret' } });
    const error = await caught(connector.create(ctx('rot_path', settings)));
    expect(error).toMatchObject({ code: 'ERR_CONNECTOR_BAD_RESPONSE', retryable: false });
    expect(error.message).toContain('$.data.secret');
    expect(error.message).not.toContain('sk_fake_');
  });
});

describe('http connector: secrets stay out of errors and evidence', () => {
  it('never shows the admin token, even when the vendor echoes it back', async () => {
    const wrong = `${vendor.adminToken}-wrong`;
    const error = await caught(connector.create(ctx('rot_badadmin', acmeSettings(), wrong)));
    expect(error).toMatchObject({ code: 'ERR_CONNECTOR_REJECTED', retryable: false });
    expect(error.message).toContain('answered 401');
    // An echoing vendor: the admin token in the URL and the answer.
    const echo = acmeSettings({
      revoke: { method: 'DELETE', url: `${vendor.url}/keys/{{vendorId}}?token={{admin}}&key={{key}}`, headers: { Authorization: 'Bearer {{admin}}' } },
    });
    const old = vendor.seedKey();
    const evidence = await connector.revoke(ctx('rot_echo', echo), { vendorId: old.id, value: old.secret });
    const shown = JSON.stringify(evidence);
    expect(shown).not.toContain(vendor.adminToken);
    expect(shown).not.toContain(old.secret);
    expect(evidence.url).toBe(`${vendor.url}/keys/${old.id}?token=%5Badmin%5D&key=%5Bkey%5D`);
    const typo = acmeSettings({ create: { ...(acmeSettings().create as object), url: `${vendor.url}/keyz?token={{admin}}` } });
    const failing = await caught(connector.create(ctx('rot_echo2', typo)));
    expect(failing.code).toBe('ERR_CONNECTOR_REJECTED');
    expect(failing.message).toContain('no_such_route');
    expect(failing.message).toContain('token=[redacted]');
    for (const text of [failing.message, JSON.stringify(failing), String(failing.stack)]) {
      expect(text).not.toContain(vendor.adminToken);
    }
  });

  it('does not quote a success answer the template did not expect, which may hold the new key', async () => {
    const settings = acmeSettings({ create: { ...(acmeSettings().create as object), expect: 200 } });
    const error = await caught(connector.create(ctx('rot_201', settings)));
    expect(error).toMatchObject({ code: 'ERR_CONNECTOR_REJECTED', step: 'create' });
    expect(error.message).toContain('answered 201');
    const made = vendor.activeKeys().at(-1)!;
    expect(error.message).not.toContain(made.secret);
  });

  it('scrubs the key from a refusal that quotes it', async () => {
    const key = vendor.seedKey();
    const settings = acmeSettings({ set: { method: 'POST', url: `${vendor.url}/deploy?key={{key}}`, headers: { Authorization: 'Bearer {{key}}' } } });
    const error = await caught(connector.set(ctx('rot_set', settings), { value: key.secret }));
    expect(error.code).toBe('ERR_CONNECTOR_REJECTED');
    expect(error.message).toContain('key=[redacted]');
    expect(error.message).not.toContain(key.secret);
  });
});

describe('http connector: only hosts the egress allowlist lists', () => {
  it('refuses a URL whose host is not listed when the settings are checked', () => {
    const strict = new HttpConnector({ egress: createEgress({ allow: ['api.acme.com:443'] }) });
    const problems = strict.validateSettings(acmeSettings());
    expect(problems).toHaveLength(3);
    expect(problems[0]).toMatch(/^create\.url: egress to 127\.0\.0\.1 is refused: 127\.0\.0\.1 is a loopback address and no IP rule lists it$/);
    expect(strict.validateSettings(acmeSettings({ create: { url: 'https://api.acme.com/keys', key: '$.secret' }, test: { url: 'https://api.acme.com/me' }, revoke: { url: 'https://api.acme.com/keys/{{vendorId}}' } }))).toEqual([]);
  });

  it('refuses at call time, naming the host and not retrying, with no request made', async () => {
    const before = vendor.log.length;
    const strict = new HttpConnector({ egress: createEgress({ allow: [`127.0.0.1:${Number(new URL(vendor.url).port) + 1}`] }) });
    const error = await caught(strict.create(ctx('rot_egress', acmeSettings())));
    expect(error).toMatchObject({ code: 'ERR_CONNECTOR_EGRESS_REFUSED', step: 'create', retryable: false });
    expect(error.message).toContain('egress to 127.0.0.1 is refused');
    expect(error.message).not.toContain(vendor.adminToken);
    expect(vendor.log.length).toBe(before);
    expect((await caught(new HttpConnector().create(ctx('rot_none', acmeSettings())))).code).toBe('ERR_CONNECTOR_EGRESS_REFUSED');
  });

  it('does not follow a redirect: a 3xx is a refusal and the admin token goes nowhere else', async () => {
    const { createServer } = await import('node:http');
    const seen: string[] = [];
    const elsewhere = createServer((req, res) => {
      seen.push(String(req.headers.authorization));
      res.writeHead(201, { 'content-type': 'application/json' }).end('{"secret":"sk_x","id":"1"}');
    });
    await new Promise<void>((resolve) => elsewhere.listen(0, '127.0.0.1', resolve));
    const target = `http://127.0.0.1:${(elsewhere.address() as { port: number }).port}/keys`;
    const redirector = createServer((req, res) => res.writeHead(307, { location: target }).end());
    await new Promise<void>((resolve) => redirector.listen(0, '127.0.0.1', resolve));
    try {
      const from = `http://127.0.0.1:${(redirector.address() as { port: number }).port}/keys`;
      const error = await caught(connector.create(ctx('rot_redirect', acmeSettings({ create: { ...(acmeSettings().create as object), url: from } }))));
      expect(error).toMatchObject({ code: 'ERR_CONNECTOR_REJECTED', retryable: false });
      expect(error.message).toContain('answered 307');
      expect(seen).toEqual([]);
    } finally {
      redirector.close();
      elsewhere.close();
    }
  });
});
