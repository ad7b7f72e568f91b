import { describe, expect, it } from 'vitest';
import { KeysmithApiError, KeysmithClient, secretUrl } from './client.js';

interface Seen {
  method: string;
  url: string;
  body: unknown;
}

function recordingClient(status = 200, answer: unknown = {}): { client: KeysmithClient; seen: Seen[] } {
  const seen: Seen[] = [];
  const fake = (async (input: URL | RequestInfo, init?: RequestInit) => {
    seen.push({ method: init?.method ?? 'GET', url: String(input), body: init?.body === undefined ? undefined : JSON.parse(String(init.body)) });
    return new Response(JSON.stringify(answer), { status, headers: { 'content-type': 'application/json' } });
  }) as typeof fetch;
  return { client: new KeysmithClient({ addr: 'http://ks.test', fetch: fake }), seen };
}

describe('secret and KEK routes', () => {
  it('sends every vault call to its route, with slashes of the path kept', async () => {
    const { client, seen } = recordingClient();
    const path = 'payments/stripe/api-key';
    await client.putSecret(path, { value: 's3cret', cas: 0 });
    await client.readSecret(path, { stage: 'previous' });
    await client.readSecret(path, { version: 3 });
    await client.secretVersions(path);
    await client.promoteSecret(path, { cas: 2 });
    await client.rollbackSecret(path);
    await client.moveSecretStage(path, { stage: 'canary', version: null });
    await client.deleteSecret(path, { recoveryWindow: '7d' });
    await client.restoreSecret(path);
    await client.destroySecretVersions(path, { versions: [1, 2] });
    await client.listSecrets({ prefix: 'payments/', deleted: true, limit: 10 });
    await client.secretReaders(path, { stage: 'current', since: '24h' });
    await client.kekStatus();
    await client.rotateKek();
    await client.retireKek(2);
    const base = 'http://ks.test/v1/secrets/payments/stripe/api-key';
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual([
      `PUT ${base}`,
      `GET ${base}?stage=previous`,
      `GET ${base}?version=3`,
      `GET ${base}/versions`,
      `POST ${base}/promote`,
      `POST ${base}/rollback`,
      `POST ${base}/stages`,
      `DELETE ${base}?recoveryWindow=7d`,
      `POST ${base}/restore`,
      `POST ${base}/destroy`,
      'GET http://ks.test/v1/secrets?prefix=payments%2F&deleted=true&limit=10',
      `GET ${base}/readers?stage=current&since=24h`,
      'GET http://ks.test/v1/kek',
      'POST http://ks.test/v1/kek/rotate',
      'POST http://ks.test/v1/kek/versions/2/retire',
    ]);
    expect(seen[0]!.body).toEqual({ value: 's3cret', cas: 0 });
    expect(seen[4]!.body).toEqual({ cas: 2 });
    expect(seen[6]!.body).toEqual({ stage: 'canary', version: null });
    expect(seen[9]!.body).toEqual({ versions: [1, 2] });
  });

  it('turns a problem answer into KeysmithApiError with the server code', async () => {
    const { client } = recordingClient(409, { status: 409, code: 'conflict', error: 'ERR_SECRET_CAS_MISMATCH', detail: 'cas 1 does not match version 2' });
    const failure = await client.putSecret('a/b', { value: 'x', cas: 1 }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(KeysmithApiError);
    expect(failure).toMatchObject({ status: 409, error: 'ERR_SECRET_CAS_MISMATCH', code: 'conflict' });
  });
});

describe('secretUrl', () => {
  it('escapes characters that would leave the path, and refuses dot segments', () => {
    expect(secretUrl('a/b-c_d.e')).toBe('/v1/secrets/a/b-c_d.e');
    expect(secretUrl('a?x=1#f', 'versions')).toBe('/v1/secrets/a%3Fx%3D1%23f/versions');
    expect(() => secretUrl('a/../kek')).toThrow(RangeError);
    expect(() => secretUrl('./a')).toThrow(RangeError);
  });
});

describe('rotation policy routes', () => {
  it('sends list, get, put and delete to /v1/rotation/policies, escaping the name', async () => {
    const { client, seen } = recordingClient();
    await client.listRotationPolicies();
    await client.getRotationPolicy('stripe');
    const policy = { name: 'stripe', target: { secret: 'a/b' }, schedule: { every: '30d' }, overlap: '1d', connector: { type: 'http' as const } };
    await client.putRotationPolicy('stripe', { policy, version: 0 });
    await client.deleteRotationPolicy('stripe', { version: 2 });
    await client.deleteRotationPolicy('a/b');
    const base = 'http://ks.test/v1/rotation/policies';
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual([`GET ${base}`, `GET ${base}/stripe`, `PUT ${base}/stripe`, `DELETE ${base}/stripe?version=2`, `DELETE ${base}/a%2Fb`]);
    expect(seen[2]?.body).toEqual({ policy, version: 0 });
  });
});
