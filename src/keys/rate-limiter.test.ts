import { describe, expect, it } from 'vitest';
import { RateLimiter } from './rate-limiter.js';

describe('rate limiter', () => {
  it('allows the limit within a window, refuses the next, and resets with the next window', () => {
    const limiter = new RateLimiter();
    const start = 1_000_000_020_000;
    expect(limiter.take('k', 2, 60_000, start).allowed).toBe(true);
    const second = limiter.take('k', 2, 60_000, start + 1);
    expect(second).toMatchObject({ allowed: true, remaining: 0 });
    expect(limiter.take('k', 2, 60_000, start + 2).allowed).toBe(false);
    expect(limiter.take('other', 2, 60_000, start + 2).allowed).toBe(true);
    expect(limiter.take('k', 2, 60_000, start + 60_000).allowed).toBe(true);
  });
});
