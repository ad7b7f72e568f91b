import { describe, expect, it } from 'vitest';
import { decideMasterKey, type MasterKeyDecisionInput } from './master-key-guard.js';

const recorded = { scheme: 'hmac-sha256:v1', check_value: 'aa'.repeat(32), origin: 'new' as const, created_at: '2026-11-01T00:00:00.000Z' };
const other = 'bb'.repeat(32);

function decide(input: Partial<MasterKeyDecisionInput> & Pick<MasterKeyDecisionInput, 'state'>) {
  return decideMasterKey({ mode: 'serve', keyCheck: undefined, ...input });
}

describe('decideMasterKey', () => {
  for (const mode of ['init', 'serve', 'migrate'] as const) {
    it(`${mode}: refuses a missing key when the database recorded one`, () => {
      expect(decide({ mode, state: { recorded, hasData: true } })).toEqual({ action: 'refuse', reason: 'missing' });
      expect(decide({ mode, state: { recorded, hasData: false } })).toEqual({ action: 'refuse', reason: 'missing' });
    });

    it(`${mode}: refuses another key than the recorded one`, () => {
      expect(decide({ mode, keyCheck: other, state: { recorded, hasData: true } })).toEqual({ action: 'refuse', reason: 'mismatch' });
    });

    it(`${mode}: proceeds with the recorded key`, () => {
      expect(decide({ mode, keyCheck: recorded.check_value, state: { recorded, hasData: true } })).toEqual({ action: 'proceed' });
    });

    it(`${mode}: refuses a missing key for an older database that has data`, () => {
      expect(decide({ mode, state: { recorded: undefined, hasData: true } })).toEqual({ action: 'refuse', reason: 'missing' });
    });

    it(`${mode}: tries a given key on an older database that has data before recording it`, () => {
      expect(decide({ mode, keyCheck: other, state: { recorded: undefined, hasData: true } })).toEqual({ action: 'record-tried' });
    });

    it(`${mode}: records a given key on an empty database without making one`, () => {
      expect(decide({ mode, keyCheck: other, state: { recorded: undefined, hasData: false } })).toEqual({ action: 'record-new', makeKey: false });
    });
  }

  it('makes a key for an empty database on init and serve only', () => {
    const empty = { recorded: undefined, hasData: false };
    expect(decide({ mode: 'init', state: empty })).toEqual({ action: 'record-new', makeKey: true });
    expect(decide({ mode: 'serve', state: empty })).toEqual({ action: 'record-new', makeKey: true });
    expect(decide({ mode: 'migrate', state: empty })).toEqual({ action: 'migrate-only' });
  });
});
