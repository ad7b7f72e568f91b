import { describe, expect, it } from 'vitest';
import { AppError } from '../shared/errors.js';
import { DEFAULT_PKCS11_MODULE, openKekProvider, resolveKekConfig, type ReadTextFile } from './kek-config.js';
import { ConfigError } from './defaults.js';

const noFiles: ReadTextFile = (path) => {
  throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
};
const files =
  (contents: Record<string, string>): ReadTextFile =>
  (path) => {
    const text = contents[path];
    if (text === undefined) return noFiles(path);
    return text;
  };

function configError(resolve: () => unknown): ConfigError {
  try {
    resolve();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('resolveKekConfig', () => {
  it('uses the local master key when nothing is set', () => {
    expect(resolveKekConfig({}, noFiles)).toEqual({ provider: 'local' });
    expect(resolveKekConfig({ KEYSMITH_KEK_PROVIDER: '' }, noFiles)).toEqual({ provider: 'local' });
    expect(resolveKekConfig({ KEYSMITH_KEK_PROVIDER: 'local' }, noFiles)).toEqual({ provider: 'local' });
  });

  it('reads a PKCS#11 token with the SoftHSM2 module by default', () => {
    const env = { KEYSMITH_KEK_PROVIDER: 'pkcs11', KEYSMITH_PKCS11_TOKEN: 'keysmith', KEYSMITH_PKCS11_PIN: '1234' };
    expect(resolveKekConfig(env, noFiles)).toEqual({ provider: 'pkcs11', module: DEFAULT_PKCS11_MODULE, tokenLabel: 'keysmith', pin: '1234' });
    expect(DEFAULT_PKCS11_MODULE).toBe('/usr/lib/softhsm/libsofthsm2.so');
  });

  it('takes the module path from KEYSMITH_PKCS11_MODULE', () => {
    const env = {
      KEYSMITH_KEK_PROVIDER: 'pkcs11',
      KEYSMITH_PKCS11_MODULE: '/opt/hsm/lib/libcloudhsm_pkcs11.so',
      KEYSMITH_PKCS11_TOKEN: 'prod',
      KEYSMITH_PKCS11_PIN: 'user:pass',
    };
    expect(resolveKekConfig(env, noFiles)).toMatchObject({ module: '/opt/hsm/lib/libcloudhsm_pkcs11.so' });
  });

  it('reads the PIN from KEYSMITH_PKCS11_PIN_FILE, without its trailing newline', () => {
    const env = { KEYSMITH_KEK_PROVIDER: 'pkcs11', KEYSMITH_PKCS11_TOKEN: 'prod', KEYSMITH_PKCS11_PIN_FILE: '/run/secrets/pin' };
    expect(resolveKekConfig(env, files({ '/run/secrets/pin': '98 76\n' }))).toMatchObject({ pin: '98 76' });
    expect(resolveKekConfig(env, files({ '/run/secrets/pin': '9876\r\n' }))).toMatchObject({ pin: '9876' });
  });

  it('names KEYSMITH_KEK_PROVIDER when it is neither local nor pkcs11', () => {
    expect(configError(() => resolveKekConfig({ KEYSMITH_KEK_PROVIDER: 'kms' }, noFiles)).message).toMatch(/^KEYSMITH_KEK_PROVIDER .*"kms"/);
  });

  it('names KEYSMITH_PKCS11_TOKEN when it is missing or too long for a token label', () => {
    const base = { KEYSMITH_KEK_PROVIDER: 'pkcs11', KEYSMITH_PKCS11_PIN: '1234' };
    expect(configError(() => resolveKekConfig(base, noFiles)).message).toContain('KEYSMITH_PKCS11_TOKEN');
    expect(configError(() => resolveKekConfig({ ...base, KEYSMITH_PKCS11_TOKEN: '  ' }, noFiles)).message).toContain('KEYSMITH_PKCS11_TOKEN');
    expect(configError(() => resolveKekConfig({ ...base, KEYSMITH_PKCS11_TOKEN: 'x'.repeat(33) }, noFiles)).message).toContain('KEYSMITH_PKCS11_TOKEN');
  });

  it('requires exactly one of KEYSMITH_PKCS11_PIN and KEYSMITH_PKCS11_PIN_FILE', () => {
    const base = { KEYSMITH_KEK_PROVIDER: 'pkcs11', KEYSMITH_PKCS11_TOKEN: 'prod' };
    const neither = configError(() => resolveKekConfig(base, noFiles)).message;
    expect(neither).toContain('KEYSMITH_PKCS11_PIN');
    expect(neither).toContain('KEYSMITH_PKCS11_PIN_FILE');
    const both = { ...base, KEYSMITH_PKCS11_PIN: '1234', KEYSMITH_PKCS11_PIN_FILE: '/run/secrets/pin' };
    expect(configError(() => resolveKekConfig(both, files({ '/run/secrets/pin': '1234' }))).message).toMatch(/only one of KEYSMITH_PKCS11_PIN and KEYSMITH_PKCS11_PIN_FILE/);
  });

  it('names KEYSMITH_PKCS11_PIN_FILE when it cannot be read or is empty, never echoing a PIN', () => {
    const env = { KEYSMITH_KEK_PROVIDER: 'pkcs11', KEYSMITH_PKCS11_TOKEN: 'prod', KEYSMITH_PKCS11_PIN_FILE: '/run/secrets/pin' };
    const missing = configError(() => resolveKekConfig(env, noFiles)).message;
    expect(missing).toBe('KEYSMITH_PKCS11_PIN_FILE /run/secrets/pin cannot be read (ENOENT)');
    expect(configError(() => resolveKekConfig(env, files({ '/run/secrets/pin': '\n' }))).message).toContain('KEYSMITH_PKCS11_PIN_FILE');
  });
});

describe('openKekProvider', () => {
  const masterKey = Buffer.alloc(32, 3);
  const random = (size: number): Uint8Array => Buffer.alloc(size, 1);

  it('opens the local provider over the master key', async () => {
    const kek = openKekProvider({ provider: 'local' }, masterKey, random);
    expect(kek.id).toBe('local');
    const wrapped = await kek.wrapKey(Buffer.alloc(32, 9), 1, Buffer.from('a'));
    expect(await kek.unwrapKey(wrapped, 1, Buffer.from('a'))).toEqual(Buffer.alloc(32, 9));
    await kek.close();
  });

  it('answers ERR_KEK_UNAVAILABLE when the PKCS#11 module cannot be loaded', () => {
    const config = { provider: 'pkcs11', module: '/nonexistent/libpkcs11.so', tokenLabel: 'prod', pin: '1234' } as const;
    let error: unknown;
    try {
      openKekProvider(config, masterKey, random);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe('ERR_KEK_UNAVAILABLE');
    expect((error as AppError).message).toContain('/nonexistent/libpkcs11.so');
    expect((error as AppError).message).not.toContain('1234');
  });
});
