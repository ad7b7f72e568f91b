import { describe, expect, it } from 'vitest';
import { AppError } from '../shared/errors.js';
import { formatSelector, parseSelector } from './incident-selector.js';

const ID_A = 'key_0123456789abcdefghijAB';
const ID_B = 'key_0123456789abcdefghijCD';

function refusal(text: string): AppError {
  try {
    parseSelector(text);
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe('ERR_INCIDENT_SELECTOR_INVALID');
    expect((error as AppError).status).toBe(400);
    return error as AppError;
  }
  throw new Error(`"${text}" was accepted`);
}

describe('parseSelector', () => {
  it('reads every field, ORs a repeated field and normalises the time', () => {
    const selector = parseSelector(` owner=alice , env=live,label=team=payments,label=team=billing,label=tier=gold,key=${ID_A},key=${ID_B},createdBefore=2026-11-01T01:00:00+01:00`);
    expect(selector).toEqual({
      owners: ['alice'],
      envs: ['live'],
      labels: { team: ['payments', 'billing'], tier: ['gold'] },
      keyIds: [ID_A, ID_B],
      createdBefore: '2026-11-01T00:00:00.000Z',
    });
  });

  it('formats a canonical form that parses to the same selector', () => {
    const selector = parseSelector(`label=tier=gold,owner=bob,owner=bob,key=${ID_A},env=test`);
    const text = formatSelector(selector);
    expect(text).toBe(`owner=bob,env=test,label=tier=gold,key=${ID_A}`);
    expect(parseSelector(text)).toEqual(selector);
  });

  it('keeps "=" inside a label value', () => {
    expect(parseSelector('label=query=a=b').labels).toEqual({ query: ['a=b'] });
  });

  it('refuses an empty selector, naming the fields', () => {
    for (const text of ['', '   ']) expect(refusal(text).message).toMatch(/empty.*owner=.*label=k=v/);
  });

  it.each([
    ['owner=a,,env=live', /empty criterion/],
    ['owner=a,', /empty criterion/],
    ['team=payments', /unknown selector field "team"/],
    ['owner', /owner= needs a value/],
    ['owner=', /owner= needs a value/],
    ['env=prod', /env= must be live or test/],
    ['label=team', /label= takes name=value/],
    ['label=team=', /label= takes name=value/],
    ['label=Team=x', /not a label name/],
    ['key=abc', /key= takes a key id/],
    ['createdBefore=yesterday', /RFC 3339/],
    ['createdBefore=2026-13-45T00:00:00Z', /RFC 3339/],
    ['createdBefore=2026-01-01T00:00:00Z,createdBefore=2026-01-02T00:00:00Z', /more than once/],
    ['owner=a\u0001b', /control characters/],
  ])('refuses %j', (text, message) => {
    const error = refusal(text);
    expect(error.message).toMatch(message);
    expect(error.details).toEqual([{ field: 'select', message: error.message }]);
  });

  it('never echoes something that looks like a key', () => {
    const key = `ks_live_${'A'.repeat(22)}_${'b'.repeat(49)}`;
    for (const text of [`key=${key}`, `${key}=x`, `env=${key}`]) {
      const error = refusal(text);
      expect(error.message).not.toContain(key);
      expect(error.message).not.toContain('A'.repeat(22));
    }
  });

  it('refuses more than 10,000 key ids', () => {
    const ids = Array.from({ length: 10_001 }, (_, i) => `key=key_${String(i).padStart(22, '0')}`);
    expect(refusal(ids.join(',')).message).toMatch(/more than 10000 key ids/);
  });
});
