import { describe, expect, it } from 'vitest';
import { postgresDialect, sqliteDialect } from './dialect.js';

describe('store dialects', () => {
  it('batches rows so no statement carries more parameters than the database takes', () => {
    const rows = Array.from({ length: 10_000 }, (_, i) => i);
    for (const dialect of [sqliteDialect, postgresDialect]) {
      const batches = dialect.chunk(rows, 11);
      expect(batches.flat()).toEqual(rows);
      for (const batch of batches) expect(batch.length * 11).toBeLessThanOrEqual(dialect.maxParams);
      expect(batches[0]!.length).toBe(Math.floor(dialect.maxParams / 11));
    }
  });

  it('gives an empty list no batches and refuses a row wider than a statement', () => {
    expect(sqliteDialect.chunk([], 3)).toEqual([]);
    expect(() => postgresDialect.chunk([1], 70_000)).toThrow(RangeError);
    expect(() => postgresDialect.chunk([1], 0)).toThrow(RangeError);
  });

  it('has one writer on SQLite and concurrent writers on PostgreSQL', () => {
    expect(sqliteDialect.singleWriter).toBe(true);
    expect(postgresDialect.singleWriter).toBe(false);
  });
});
