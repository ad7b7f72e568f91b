/**
 * Per-key rate limits, counted in memory on each server (a fixed window per key). Several
 * servers each enforce the limit on their own share of traffic.
 */
export interface RateLimitDecision {
  readonly allowed: boolean;
  readonly limit: number;
  readonly remaining: number;
  /** When the current window ends, ms since the epoch. */
  readonly resetAt: number;
}

interface Window {
  start: number;
  count: number;
}

export class RateLimiter {
  readonly #windows = new Map<string, Window>();
  readonly #maxEntries: number;

  constructor(maxEntries = 200_000) {
    this.#maxEntries = maxEntries;
  }

  take(keyId: string, limit: number, windowMs: number, now: number): RateLimitDecision {
    const start = now - (now % windowMs);
    let window = this.#windows.get(keyId);
    if (!window || window.start !== start) {
      if (!window && this.#windows.size >= this.#maxEntries) this.#evict(now);
      window = { start, count: 0 };
      this.#windows.set(keyId, window);
    }
    const resetAt = start + windowMs;
    if (window.count >= limit) return { allowed: false, limit, remaining: 0, resetAt };
    window.count += 1;
    return { allowed: true, limit, remaining: limit - window.count, resetAt };
  }

  #evict(now: number): void {
    // Windows older than a day are certainly over; failing that, drop the oldest entry.
    for (const [id, window] of this.#windows) if (now - window.start > 86_400_000) this.#windows.delete(id);
    if (this.#windows.size >= this.#maxEntries) {
      const oldest = this.#windows.keys().next();
      if (!oldest.done) this.#windows.delete(oldest.value);
    }
  }
}
