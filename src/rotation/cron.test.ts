import { describe, expect, it } from 'vitest';
import { parseCron, smallestCronGapMs } from './cron.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

function gap(expression: string): number | undefined {
  const parsed = parseCron(expression);
  if (!parsed.ok) throw new Error(parsed.message);
  return smallestCronGapMs(parsed.fields);
}

describe('cron expressions', () => {
  it('reads numbers, ranges, steps, lists and *', () => {
    const parsed = parseCron('0,30 9-17/4 1 */3 1-5');
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.fields.minutes).toEqual([0, 30]);
    expect(parsed.fields.hours).toEqual([9, 13, 17]);
    expect([...parsed.fields.months]).toEqual([1, 4, 7, 10]);
    expect([...parsed.fields.daysOfWeek]).toEqual([1, 2, 3, 4, 5]);
  });

  it('refuses the wrong number of fields, values out of range, steps of 0 and stray text', () => {
    for (const expression of ['0 3 * *', '0 3 * * * *', '60 * * * *', '0 24 * * *', '0 0 0 * *', '0 0 * 13 *', '0 0 * * 8', '*/0 * * * *', '5-1 * * * *', 'a * * * *', '0 3 * * MON']) {
      expect(parseCron(expression).ok, expression).toBe(false);
    }
  });

  it('measures the closest firings within a day and across midnight', () => {
    expect(gap('*/5 * * * *')).toBe(5 * MINUTE);
    expect(gap('0 * * * *')).toBe(HOUR);
    expect(gap('0 3 * * *')).toBe(DAY);
    expect(gap('0 0,12 * * *')).toBe(12 * HOUR);
    expect(gap('30 23 * * *')).toBe(DAY);
    expect(gap('0 0,23 * * *')).toBe(HOUR);
    expect(gap('50 23 * * *')).toBe(DAY);
  });

  it('counts a weekly or monthly schedule as days apart, and a never-firing one as never', () => {
    expect(gap('0 3 * * 1')).toBe(7 * DAY);
    expect(gap('0 3 * * 0,7')).toBe(7 * DAY);
    expect(gap('0 3 1 * *')).toBe(28 * DAY);
    expect(gap('0 3 31 2 *')).toBeUndefined();
  });

  it('treats two restricted day fields as either one, as cron does', () => {
    // The 1st of the month or any Monday: a Monday that is also the 2nd gives 1 day.
    expect(gap('0 3 1 * 1')).toBe(DAY);
  });
});
