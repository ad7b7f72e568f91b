import { describe, expect, it } from 'vitest';
import { RefusedError, UsageError } from '../command.js';
import { environmentValue, exitStatus, parseSecretSpec, parseSecretSpecs } from './run.js';

describe('parseSecretSpec', () => {
  it('reads NAME=path as the current stage', () => {
    expect(parseSecretSpec('DB_PASS=payments/db/password')).toEqual({ name: 'DB_PASS', path: 'payments/db/password', text: 'DB_PASS=payments/db/password' });
  });

  it('reads @digits as a version and @word as a stage', () => {
    expect(parseSecretSpec('X=a/b@3')).toMatchObject({ path: 'a/b', version: 3 });
    expect(parseSecretSpec('X=a/b@pending')).toMatchObject({ path: 'a/b', stage: 'pending' });
    expect(parseSecretSpec('X=a/b@pending')).not.toHaveProperty('version');
  });

  it('reads #field after the selector, keeping anything after # as the field', () => {
    expect(parseSecretSpec('PW=db/creds#password')).toMatchObject({ path: 'db/creds', field: 'password' });
    expect(parseSecretSpec('PW=db/creds@previous#pass.word@x')).toMatchObject({ path: 'db/creds', stage: 'previous', field: 'pass.word@x' });
  });

  it('refuses names that are not environment variable names', () => {
    for (const text of ['1X=a/b', 'MY-VAR=a/b', '=a/b', 'X Y=a/b', 'a/b']) expect(() => parseSecretSpec(text)).toThrow(UsageError);
  });

  it('refuses bad paths, versions, stages and empty fields', () => {
    for (const text of ['X=', 'X=A/B', 'X=a/../b', 'X=a/b/versions', 'X=a/b@0', 'X=a/b@01', 'X=a/b@Bad', 'X=a/b@', 'X=a/b#']) {
      expect(() => parseSecretSpec(text), text).toThrow(UsageError);
    }
  });
});

describe('parseSecretSpecs', () => {
  it('refuses the same variable twice', () => {
    expect(() => parseSecretSpecs(['X=a/b', 'X=a/c'])).toThrow(/more than once/);
    expect(parseSecretSpecs(['X=a/b', 'Y=a/b'])).toHaveLength(2);
  });
});

describe('environmentValue', () => {
  const plain = parseSecretSpec('X=a/b');
  const field = parseSecretSpec('X=a/b#password');

  it('passes a string value as it is', () => {
    expect(environmentValue(plain, 'hunter22\n')).toBe('hunter22\n');
  });

  it('refuses a JSON object without #field, naming the fix', () => {
    expect(() => environmentValue(plain, { password: 'x' })).toThrow(RefusedError);
    expect(() => environmentValue(plain, { password: 'x' })).toThrow(/X=a\/b#FIELD/);
  });

  it('picks a string field, and numbers and booleans as JSON writes them', () => {
    expect(environmentValue(field, { password: 'pw', port: 5432 })).toBe('pw');
    expect(environmentValue(parseSecretSpec('P=a/b#port'), { port: 5432 })).toBe('5432');
    expect(environmentValue(parseSecretSpec('P=a/b#tls'), { tls: false })).toBe('false');
  });

  it('refuses a missing field, a nested or null field, a field of a string, and NUL characters', () => {
    expect(() => environmentValue(field, { user: 'u' })).toThrow(/no field "password"/);
    expect(() => environmentValue(field, { password: { nested: 'x' } })).toThrow(RefusedError);
    expect(() => environmentValue(field, { password: null })).toThrow(RefusedError);
    expect(() => environmentValue(field, 'a string')).toThrow(/not a JSON object/);
    expect(() => environmentValue(plain, 'a\0b')).toThrow(/NUL/);
  });

  it('never puts the value in its messages', () => {
    try {
      environmentValue(plain, 'a\0secret-value');
    } catch (error) {
      expect((error as Error).message).not.toContain('secret-value');
    }
  });
});

describe('exitStatus', () => {
  it('passes an exit code on, and maps a signal to 128 + its number', () => {
    expect(exitStatus(0, null)).toBe(0);
    expect(exitStatus(3, null)).toBe(3);
    expect(exitStatus(null, 'SIGINT')).toBe(130);
    expect(exitStatus(null, 'SIGKILL')).toBe(137);
    expect(exitStatus(null, 'SIGTERM')).toBe(143);
  });
});
