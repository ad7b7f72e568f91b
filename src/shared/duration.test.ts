import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration, tryParseDuration } from './duration.js';
import { AppError } from './errors.js';

describe('durations', () => {
  it('parses seconds, minutes, hours and days', () => {
    expect(tryParseDuration('90s')).toBe(90_000);
    expect(tryParseDuration('15m')).toBe(900_000);
    expect(tryParseDuration('24h')).toBe(86_400_000);
    expect(tryParseDuration('30d')).toBe(30 * 86_400_000);
  });

  it('refuses negative, zero, unitless, fractional and unknown-unit durations', () => {
    for (const text of ['-5d', '0d', '5', 'abc', '1.5h', '5w', '', ' 5d', '5d ', '01d']) {
      expect(tryParseDuration(text), text).toBeUndefined();
    }
  });

  it('throws ERR_INVALID_DURATION naming the field', () => {
    try {
      parseDuration('-5d', 'ttl');
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(AppError);
      expect((error as AppError).code).toBe('ERR_INVALID_DURATION');
      expect((error as AppError).message).toContain('ttl');
    }
  });

  it('never echoes a key-shaped value back in its message', () => {
    const key = 'ks_live_AbCdEfGhIjKlMnOpQrStUv_secretsecretsecret';
    expect(() => parseDuration(key, 'ttl')).toThrow(/\[redacted\]/);
  });

  it('formats milliseconds with the largest whole unit', () => {
    expect(formatDuration(86_400_000)).toBe('1d');
    expect(formatDuration(90_000)).toBe('90s');
    expect(formatDuration(3_600_000 * 25)).toBe('25h');
  });
});
