import { describe, expect, it } from 'vitest';
import { ConfigError, resolveConfig } from './config.js';
import { parseConfigText, type ConfigFileIO } from './config-file.js';

describe('server timeouts', () => {
  it('bound slow clients by default: 30s for a request, 10s for its headers, 72s idle keep-alive', () => {
    expect(resolveConfig({}, {}).timeouts).toEqual({ requestMs: 30_000, headersMs: 10_000, keepAliveMs: 72_000 });
  });

  it('reads KEYSMITH_REQUEST_TIMEOUT, KEYSMITH_HEADERS_TIMEOUT and KEYSMITH_KEEPALIVE_TIMEOUT', () => {
    const env = { KEYSMITH_REQUEST_TIMEOUT: '2m', KEYSMITH_HEADERS_TIMEOUT: '20s', KEYSMITH_KEEPALIVE_TIMEOUT: '5s' };
    expect(resolveConfig({}, env).timeouts).toEqual({ requestMs: 120_000, headersMs: 20_000, keepAliveMs: 5_000 });
    // A short request timeout shortens the default header timeout with it.
    expect(resolveConfig({}, { KEYSMITH_REQUEST_TIMEOUT: '5s' }).timeouts.headersMs).toBe(5_000);
  });

  it('refuses headers allowed longer than the request, a timeout under a second, and text that is not a duration', () => {
    expect(() => resolveConfig({}, { KEYSMITH_REQUEST_TIMEOUT: '10s', KEYSMITH_HEADERS_TIMEOUT: '20s' })).toThrow(ConfigError);
    expect(() => resolveConfig({}, { KEYSMITH_REQUEST_TIMEOUT: '0s' })).toThrow(ConfigError);
    expect(() => resolveConfig({}, { KEYSMITH_KEEPALIVE_TIMEOUT: 'forever' })).toThrow(/keepalive-timeout/);
  });
});

describe('failed authentication settings', () => {
  it('aggregate per minute and throttle after 20 failures by default', () => {
    expect(resolveConfig({}, {}).authFailures).toEqual({ windowMs: 60_000, limit: 20, maxAddresses: 10_000 });
  });

  it('read KEYSMITH_AUTH_FAILURE_WINDOW, _LIMIT (0 never throttles) and _ADDRESSES, refusing what is not a number', () => {
    const env = { KEYSMITH_AUTH_FAILURE_WINDOW: '5m', KEYSMITH_AUTH_FAILURE_LIMIT: '0', KEYSMITH_AUTH_FAILURE_ADDRESSES: '500' };
    expect(resolveConfig({}, env).authFailures).toEqual({ windowMs: 300_000, limit: 0, maxAddresses: 500 });
    expect(() => resolveConfig({}, { KEYSMITH_AUTH_FAILURE_LIMIT: 'many' })).toThrow(ConfigError);
    expect(() => resolveConfig({}, { KEYSMITH_AUTH_FAILURE_ADDRESSES: '0' })).toThrow(ConfigError);
  });
});

describe('limits in the configuration file', () => {
  it('maps http.* and auth.* to their KEYSMITH_* settings, the environment overriding', () => {
    const text = 'http: { requestTimeout: 20s, headersTimeout: 5s, keepAliveTimeout: 30s }\nauth: { failureWindow: 2m, failureLimit: 0, failureAddresses: 50 }\n';
    const files: ConfigFileIO = {
      readText: () => text,
      readBytes: () => Buffer.from(text),
      mode: () => 0o600,
    };
    expect(parseConfigText('/etc/keysmith.yaml', text, files).env).toEqual({
      KEYSMITH_REQUEST_TIMEOUT: '20s',
      KEYSMITH_HEADERS_TIMEOUT: '5s',
      KEYSMITH_KEEPALIVE_TIMEOUT: '30s',
      KEYSMITH_AUTH_FAILURE_WINDOW: '2m',
      KEYSMITH_AUTH_FAILURE_LIMIT: '0',
      KEYSMITH_AUTH_FAILURE_ADDRESSES: '50',
    });
    const config = resolveConfig({ config: '/etc/keysmith.yaml' }, { KEYSMITH_AUTH_FAILURE_LIMIT: '7' }, files);
    expect(config.timeouts).toEqual({ requestMs: 20_000, headersMs: 5_000, keepAliveMs: 30_000 });
    expect(config.authFailures).toEqual({ windowMs: 120_000, limit: 7, maxAddresses: 50 });
    expect(() => parseConfigText('/etc/keysmith.yaml', 'auth: { failureLimit: -1 }\n', files)).toThrow(/failureLimit must be a whole number/);
  });
});
