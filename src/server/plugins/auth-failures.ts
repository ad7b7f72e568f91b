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
  /** The caller's address; the tracker counts IPv6 callers by /64 (see `addressKey`). */
  readonly ip: string;
  readonly target: string | null;
  readonly requestId: string;
  readonly method: string;
  readonly route: string | null;
}

/** One `auth.failed` audit event to write; its source is `info.ip`, the latest caller's address. */
export interface FailureEvent {
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
  /** Told when held counts could not be written (the database away at a window's end). */
  readonly onWriteError?: (error: unknown, count: number) => void;
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
    if (limit === 0 || this.#addresses.size === 0) return 0;
    const entry = this.#addresses.get(addressKey(ip));
    if (entry === undefined || entry.failures < limit) return 0;
    const left = entry.startedAt + windowMs - this.#deps.clock.now();
    return left > 0 ? Math.ceil(left / 1000) : 0;
  }

  /**
   * Notes a failure. Resolves once it is written when it is the first of its reason in the
   * window (an audit failure is then the caller's to report); at once otherwise.
   */
  fail(info: FailureInfo): Promise<void> | undefined {
    this.#deps.count(info.reason);
    const ip = addressKey(info.ip);
    const now = this.#deps.clock.now();
    let entry = this.#addresses.get(ip);
    if (entry !== undefined && now - entry.startedAt >= this.#deps.options.windowMs) {
      this.#flush(entry);
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
    // Counts of closed windows still being written go into the log first, so it reads in order.
    if (this.#writes.size === 0) return this.#deps.write({ info, count: 1 });
    return Promise.allSettled([...this.#writes]).then(() => this.#deps.write({ info, count: 1 }));
  }

  /** Writes the counts of every window that has closed. */
  sweep(): void {
    const now = this.#deps.clock.now();
    for (const [ip, entry] of this.#addresses) {
      if (now - entry.startedAt < this.#deps.options.windowMs) continue;
      this.#flush(entry);
      this.#addresses.delete(ip);
    }
  }

  /** Writes every count still held (shutdown) and waits for the writes. */
  async close(): Promise<void> {
    for (const entry of this.#addresses.values()) this.#flush(entry);
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
    if (entry !== undefined) this.#flush(entry);
    this.#addresses.delete(oldest.value);
  }

  /** Starts writing the window's held counts; `close()` and the next first failure wait for them. */
  #flush(entry: AddressWindow): void {
    const window = { from: new Date(entry.startedAt).toISOString(), to: new Date(entry.startedAt + this.#deps.options.windowMs).toISOString() };
    for (const pending of entry.reasons.values()) {
      if (pending.count === 0) continue;
      const count = pending.count;
      pending.count = 0;
      // close() waits for these writes; one that fails is reported, not thrown at a caller.
      const write = this.#deps.write({ info: pending.last, count, window }).catch((error: unknown) => this.#deps.onWriteError?.(error, count));
      this.#writes.add(write);
      void write.finally(() => this.#writes.delete(write));
    }
  }
}

/**
 * What failures are counted by: an IPv4 address as it is (an IPv4-mapped IPv6 one as IPv4), an
 * IPv6 address by its /64, the block one host is usually given, so a host cannot step through
 * its addresses to escape the throttle. Cheap for IPv4, which most calls are.
 */
export function addressKey(ip: string): string {
  if (!ip.includes(':')) return ip;
  const lower = ip.toLowerCase();
  if (lower.startsWith('::ffff:') && lower.includes('.')) return lower.slice(7);
  const [head = '', tail] = lower.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? headGroups : [...headGroups, ...Array<string>(Math.max(8 - headGroups.length - tailGroups.length, 0)).fill('0'), ...tailGroups];
  return `${groups.slice(0, 4).map((group) => group.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}
