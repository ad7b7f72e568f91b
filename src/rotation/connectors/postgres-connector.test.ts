import { describe, expect, it } from 'vitest';
import { PostgresConnector, quoteIdentifier, scramMatches, scramVerifier } from './postgres-connector.js';

describe('postgres connector: settings', () => {
  const connector = new PostgresConnector();

  it('accepts an admin secret path and two roles', () => {
    expect(connector.validateSettings({ adminSecret: 'db/admin', roles: ['app_a', 'app_b'], timeout: '5s' })).toEqual([]);
  });

  it('names each problem', () => {
    expect(connector.validateSettings({ roles: ['same', 'same'], timeout: 'x', url: 'postgres://…' })).toEqual([
      'url is not a postgres connector setting',
      'adminSecret must be the vault path of the admin connection URL',
      'roles must name two different roles',
      'timeout must be a duration such as 10s',
    ]);
    expect(connector.validateSettings({ adminSecret: 'a', roles: ['one'] })).toEqual(['roles must be two role names (1 to 63 bytes each)']);
    expect(connector.validateSettings({ adminSecret: 'a', roles: ['a', 'x'.repeat(64)] })).toEqual(['roles must be two role names (1 to 63 bytes each)']);
  });
});

describe('quoteIdentifier', () => {
  it('doubles embedded quotes so a name cannot end the identifier', () => {
    expect(quoteIdentifier('app')).toBe('"app"');
    expect(quoteIdentifier('a"; drop role x; --')).toBe('"a""; drop role x; --"');
    expect(() => quoteIdentifier('a\u0000b')).toThrow(RangeError);
  });
});

describe('scramVerifier', () => {
  it('matches the RFC 7677 test vector', () => {
    // RFC 7677 §3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations.
    const verifier = scramVerifier('pencil', Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'));
    expect(verifier).toBe(
      'SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=',
    );
    expect(scramMatches('pencil', verifier)).toBe(true);
    expect(scramMatches('pencils', verifier)).toBe(false);
    expect(scramMatches('pencil', 'md5abc')).toBe(false);
  });
});
