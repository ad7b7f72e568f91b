import { describe, expect, it } from 'vitest';
import { jsonDeeperThan, MAX_JSON_DEPTH } from './json-depth.js';

const nested = (depth: number, open = '[', close = ']') => `${open.repeat(depth)}${close.repeat(depth)}`;

describe('jsonDeeperThan', () => {
  it('counts arrays and objects nested inside each other', () => {
    expect(jsonDeeperThan(nested(MAX_JSON_DEPTH))).toBe(false);
    expect(jsonDeeperThan(nested(MAX_JSON_DEPTH + 1))).toBe(true);
    expect(jsonDeeperThan('{"a":'.repeat(65) + '1' + '}'.repeat(65))).toBe(true);
    expect(jsonDeeperThan('{"a":'.repeat(64) + '1' + '}'.repeat(64))).toBe(false);
    expect(jsonDeeperThan(nested(3), 2)).toBe(true);
  });

  it('counts siblings once, not their sum', () => {
    expect(jsonDeeperThan(`[${Array.from({ length: 1000 }, () => nested(10)).join(',')}]`)).toBe(false);
  });

  it('ignores brackets inside strings, escaped quotes included', () => {
    expect(jsonDeeperThan(JSON.stringify({ value: '['.repeat(1000) }))).toBe(false);
    expect(jsonDeeperThan(JSON.stringify({ value: '"[\\"'.repeat(500) + '{'.repeat(500) }))).toBe(false);
    expect(jsonDeeperThan(`["\\\\", ${nested(70)}]`)).toBe(true);
  });

  it('scans a deep megabyte without a stack overflow', () => {
    expect(jsonDeeperThan(nested(500_000))).toBe(true);
  });
});
