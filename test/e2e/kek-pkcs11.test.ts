/**
 * The server with its KEK in a real PKCS#11 token (SoftHSM2): values are sealed under data
 * keys wrapped inside the token, survive a restart, and move to a new KEK version on rotation.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createSoftHsmToken, describeWithSoftHsm, type SoftHsmToken } from '../support/softhsm.js';
import { ensureBuilt, makeTempDir, removeTempDirs, startServer, stopAll, type TestServer } from './support.js';

describeWithSoftHsm('keysmith serve with KEYSMITH_KEK_PROVIDER=pkcs11', () => {
  let token: SoftHsmToken;
  let env: Record<string, string>;

  beforeAll(() => {
    ensureBuilt();
    token = createSoftHsmToken();
    env = {
      KEYSMITH_KEK_PROVIDER: 'pkcs11',
      KEYSMITH_PKCS11_MODULE: token.module,
      KEYSMITH_PKCS11_TOKEN: token.tokenLabel,
      KEYSMITH_PKCS11_PIN: token.pin,
      SOFTHSM2_CONF: token.conf,
    };
  });

  afterAll(async () => {
    await stopAll();
    removeTempDirs();
    token?.cleanup();
  });

  const call = async (server: TestServer, method: string, path: string, body?: unknown) => {
    const res = await fetch(`${server.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${server.rootToken}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, json: (await res.json()) as Record<string, any> };
  };

  it('seals under the token, reads back after a restart, and re-wraps to a new token key on rotation', { timeout: 120_000 }, async () => {
    const dataDir = join(makeTempDir('pkcs11'), 'data');
    const first = await startServer(dataDir, [], env);
    const put = await call(first, 'PUT', '/v1/secrets/vendors/sendgrid/api-key', { value: 'SG.pkcs11-e2e-value' });
    expect(put.status).toBe(201);
    const status = await call(first, 'GET', '/v1/kek');
    expect(status.json).toMatchObject({ provider: `pkcs11:${token.tokenLabel}`, currentVersion: 1, rewrap: { remaining: 0 } });
    await first.stop();

    const second = await startServer(dataDir, [], env);
    expect((await call(second, 'GET', '/v1/secrets/vendors/sendgrid/api-key')).json.value).toBe('SG.pkcs11-e2e-value');
    const rotated = await call(second, 'POST', '/v1/kek/rotate');
    expect(rotated.status).toBe(201);
    expect(rotated.json.currentVersion).toBe(2);
    let after = rotated.json;
    for (let i = 0; i < 100 && after.rewrap.remaining > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      after = (await call(second, 'GET', '/v1/kek')).json;
    }
    expect(after.rewrap.remaining).toBe(0);
    expect(after.versions.find((v: { version: number }) => v.version === 2).dataKeys).toBe(1);
    expect((await call(second, 'POST', '/v1/kek/versions/1/retire')).status).toBe(200);
    expect((await call(second, 'GET', '/v1/secrets/vendors/sendgrid/api-key')).json.value).toBe('SG.pkcs11-e2e-value');
    await second.stop();
  });

  it('refuses to start, naming the token, when the token label is unknown', { timeout: 60_000 }, async () => {
    const dataDir = join(makeTempDir('pkcs11-missing'), 'data');
    await expect(startServer(dataDir, [], { ...env, KEYSMITH_PKCS11_TOKEN: 'no-such-token' })).rejects.toThrow(/no-such-token/);
  });
});
