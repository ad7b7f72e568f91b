import { describe, expect, it } from 'vitest';
import { ConnectorError, sanitizeEvidence, scrub, secretStrings } from './connector.js';

describe('scrub', () => {
  it('removes each secret, its URL-encoded and its JSON-escaped forms', () => {
    const secrets = secretStrings({ password: 'p@ss w"rd/1' });
    const text = 'raw p@ss w"rd/1, url p%40ss%20w%22rd%2F1, json "p@ss w\\"rd/1"';
    expect(scrub(text, secrets)).toBe('raw [redacted], url [redacted], json "[redacted]"');
  });

  it('replaces a longer secret whole before a shorter one inside it', () => {
    expect(scrub('token abcd1234', secretStrings('abcd', 'abcd1234'))).toBe('token [redacted]');
  });

  it('leaves very short strings alone so ordinary text survives', () => {
    expect(secretStrings({ a: 'x', b: ['abc', 'abcd'] })).toEqual(['abcd']);
  });
});

describe('sanitizeEvidence', () => {
  it('keeps flat primitives only and scrubs strings', () => {
    expect(sanitizeEvidence({ n: 1, b: true, z: null, s: 'has s3cr3t-value', o: { x: 1 }, a: [1] }, ['s3cr3t-value'])).toEqual({
      n: 1,
      b: true,
      z: null,
      s: 'has [redacted]',
    });
    expect(sanitizeEvidence('text', [])).toEqual({});
  });
});

describe('ConnectorError', () => {
  it('carries a registry code, the step and whether to retry', () => {
    const error = new ConnectorError('ERR_CONNECTOR_TIMEOUT', 'slow', { connector: 'http', step: 'revoke', retryable: true });
    expect(error).toMatchObject({ code: 'ERR_CONNECTOR_TIMEOUT', status: 504, step: 'revoke', retryable: true, connector: 'http' });
  });
});
