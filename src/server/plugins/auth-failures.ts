/**
 * Failed authentication, per source address: aggregated in the audit log and throttled.
 *
 * A flood of bad tokens used to write one `auth.failed` row each (1,000 rows in 2 s). Now the
 * first failure per (address, reason) in a window is written at once, as before; later ones in
 * that window are counted in memory and written as one `auth.failed` event with `count` when the
 * window closes (a periodic sweep, the address's next failure, or shutdown). The counts of an
 * address's events add up to its failures. `/metrics` counts every failure.
 *
 * After `limit` failures in a window the address is throttled until the window ends: every call
 * from it that needs a token is answered 429 with `Retry-After`, before its token is looked at
 * (so before the database), a valid token included. Refusing everything is the simple, safe
 * choice (fail2ban's, not a per-token one): an attacker cannot probe which of its tokens work,
 * and a throttled client learns one clear rule. Throttled calls are counted as `throttled`.
 *
 * Memory is bounded: at most `maxAddresses` addresses are tracked; the oldest is flushed and
 * dropped when a new one comes. Windows are fixed, started by an address's first failure, and
 * read from the injected clock, so tests move time instead of sleeping.
 */
import type { Clock } from '../../shared/clock.js';

export interface AuthFailureOptions {
  /** Aggregation and throttling window (KEYSMITH_AUTH_FAILURE_WINDOW, 1m). */
  readonly windowMs: number;
  /** Failures in a window after which an address is throttled; 0 never throttles (KEYSMITH_AUTH_FAILURE_LIMIT, 20). */
  readonly limit: number;
  /** Addresses tracked at once (KEYSMITH_AUTH_FAILURE_ADDRESSES, 10000). */
  readonly maxAddresses: number;
}

export const DEFAULT_AUTH_FAILURES: AuthFailureOptions = { windowMs: 60_000, limit: 20, maxAddresses: 10_000 };

/** What is known of one failure; the audit event names the request and route of the latest. */
export interface FailureInfo {
  readonly reason: string;
  readonly target: string | null;
  readonly requestId: string;
  readonly method: string;
  readonly route: string | null;
}

/** One `auth.failed` audit event to write. */
export interface FailureEvent {
  readonly sourceIp: string;
  readonly info: FailureInfo;
  readonly count: number;
  /** The window the counted failures fell in (absent for a first failure written at once). */
  readonly window?: { readonly from: string; readonly to: string };
}

export interface AuthFailureDeps {
  readonly clock: Clock;
  readonly options: AuthFailureOptions;
  /** Writes one event; the tracker awaits it only for a first failure. */
  readonly write: (event: FailureEvent) => Promise<void>;
  /** Counts a failure by reason (metrics). */
  readonly count: (reason: string) => void;
}

interface Pending {
  count: number;
  last: FailureInfo;
}

interface AddressWindow {
  readonly startedAt: number;
  failures: number;
  /** Reasons seen in this window, with what is counted and not yet written. */
  readonly reasons: Map<string, Pending>;
}

export class AuthFailureTracker {
  readonly #deps: AuthFailureDeps;
  readonly #addresses = new Map<string, AddressWindow>();
  #writes = new Set<Promise<void>>();

  constructor(deps: AuthFailureDeps) {
    this.#deps = deps;
  }

  /** Seconds until a throttled address may call again, or 0 when it is not throttled. Cheap: one map lookup. */
  retryAfter(ip: string): number {
    const { limit, windowMs } = this.#deps.options;
    if (limit === 0) return 0;
    const entry = this.#addresses.get(ip);
    if (entry === undefined || entry.failures < limit) return 0;
    const left = entry.startedAt + windowMs - this.#deps.clock.now();
    return left > 0 ? Math.ceil(left / 1000) : 0;
  }

  /**
   * Notes a failure. Resolves once it is written when it is the first of its reason in the
   * window (an audit failure is then the caller's to report); at once otherwise.
   */
  fail(ip: string, info: FailureInfo): Promise<void> | undefined {
    this.#deps.count(info.reason);
    const now = this.#deps.clock.now();
    let entry = this.#addresses.get(ip);
    if (entry !== undefined && now - entry.startedAt >= this.#deps.options.windowMs) {
      this.#flush(ip, entry);
      this.#addresses.delete(ip);
      entry = undefined;
    }
    if (entry === undefined) {
      if (this.#addresses.size >= this.#deps.options.maxAddresses) this.#evictOldest();
      entry = { startedAt: now, failures: 0, reasons: new Map() };
      this.#addresses.set(ip, entry);
    }
    entry.failures += 1;
    const pending = entry.reasons.get(info.reason);
    if (pending !== undefined) {
      pending.count += 1;
      pending.last = info;
      return undefined;
    }
    entry.reasons.set(info.reason, { count: 0, last: info });
    return this.#deps.write({ sourceIp: ip, info, count: 1 });
  }

  /** Writes the counts of every window that has closed. */
  sweep(): void {
    const now = this.#deps.clock.now();
    for (const [ip, entry] of this.#addresses) {
      if (now - entry.startedAt < this.#deps.options.windowMs) continue;
      this.#flush(ip, entry);
      this.#addresses.delete(ip);
    }
  }

  /** Writes every count still held (shutdown) and waits for the writes. */
  async close(): Promise<void> {
    for (const [ip, entry] of this.#addresses) this.#flush(ip, entry);
    this.#addresses.clear();
    while (this.#writes.size > 0) await Promise.allSettled([...this.#writes]);
  }

  /** Addresses tracked now (for tests of the bound). */
  get size(): number {
    return this.#addresses.size;
  }

  #evictOldest(): void {
    const oldest = this.#addresses.keys().next();
    if (oldest.done === true) return;
    const entry = this.#addresses.get(oldest.value);
    if (entry !== undefined) this.#flush(oldest.value, entry);
    this.#addresses.delete(oldest.value);
  }

  #flush(ip: string, entry: AddressWindow): void {
    const window = { from: new Date(entry.startedAt).toISOString(), to: new Date(entry.startedAt + this.#deps.options.windowMs).toISOString() };
    for (const pending of entry.reasons.values()) {
      if (pending.count === 0) continue;
      const count = pending.count;
      pending.count = 0;
      // Counts are not lost quietly: close() waits for these writes; a failed one is reported by the writer.
      const write = this.#deps.write({ sourceIp: ip, info: pending.last, count, window }).catch(() => undefined);
      this.#writes.add(write);
      void write.finally(() => this.#writes.delete(write));
    }
  }
}
