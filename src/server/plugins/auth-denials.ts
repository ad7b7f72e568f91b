/**
 * Refused scopes, per principal: aggregated in the audit log, never throttled.
 *
 * Any valid token, even one with no scopes, could write one `auth.denied` row per request and
 * so grow the audit log at request rate. Now the first denial per (principal, route requirement,
 * route) in a window is written at once, as before; later ones in that window are counted in
 * memory and written as one `auth.denied` event with `count` and `window` when the window closes
 * (a periodic sweep, the same denial after it, eviction or shutdown). The counts of a principal's
 * events add up to its denials; `/metrics` counts every one.
 *
 * A denied call is still answered 403, every time: a client missing a scope must keep being told
 * so, and a 429 would hide the real problem. Only the writes are aggregated.
 *
 * Memory is bounded like the failure tracker's: at most `maxEntries` (principal, scope, route)
 * triples are held; the oldest is flushed and dropped when a new one comes. Windows are fixed,
 * started by a triple's first denial, and read from the injected clock.
 */
import type { Clock } from '../../shared/clock.js';

/** What is known of one denial; the audit event names the request and address of the latest. */
export interface DenialInfo {
  readonly principalId: string;
  /**
   * The route's requirement as the docs name it (`secrets:read:{path}`): what denials are counted
   * by. Not the scope itself, which for a secret names the path asked for, so a caller could make
   * every denial a new one by asking for a new path.
   */
  readonly requirement: string;
  /** The scope the latest call lacked (`secrets:read:prod/db`); the event names it. */
  readonly requiredScope: string;
  readonly ip: string;
  readonly requestId: string;
  readonly method: string;
  readonly route: string | null;
}

/** One `auth.denied` audit event to write. */
export interface DenialEvent {
  readonly info: DenialInfo;
  readonly count: number;
  /** The window the counted denials fell in (absent for a first denial written at once). */
  readonly window?: { readonly from: string; readonly to: string };
}

export interface AuthDenialOptions {
  /** Aggregation window (KEYSMITH_AUTH_FAILURE_WINDOW, shared with failures). */
  readonly windowMs: number;
  /** Triples tracked at once (KEYSMITH_AUTH_FAILURE_ADDRESSES, shared with failures). */
  readonly maxEntries: number;
}

export interface AuthDenialDeps {
  readonly clock: Clock;
  readonly options: AuthDenialOptions;
  /** Writes one event; the tracker awaits it only for a first denial. */
  readonly write: (event: DenialEvent) => Promise<void>;
  /** Counts a denial (metrics; no labels, so the series stay fixed). */
  readonly count: () => void;
  /** Told when held counts could not be written (the database away at a window's end). */
  readonly onWriteError?: (error: unknown, count: number) => void;
}

interface Entry {
  readonly startedAt: number;
  /** Denials after the first, not yet written. */
  count: number;
  last: DenialInfo;
}

export class AuthDenialTracker {
  readonly #deps: AuthDenialDeps;
  readonly #entries = new Map<string, Entry>();
  readonly #writes = new Set<Promise<void>>();

  constructor(deps: AuthDenialDeps) {
    this.#deps = deps;
  }

  /**
   * Notes a denial. Resolves once it is written when it is the first of its triple in the
   * window (an audit failure is then the caller's to report); at once otherwise.
   */
  deny(info: DenialInfo): Promise<void> | undefined {
    this.#deps.count();
    // NUL cannot occur in a principal id, a requirement or a route pattern: the key is unambiguous.
    const key = `${info.principalId}\u0000${info.requirement}\u0000${info.route ?? ''}`;
    const now = this.#deps.clock.now();
    let entry = this.#entries.get(key);
    if (entry !== undefined && now - entry.startedAt >= this.#deps.options.windowMs) {
      this.#flush(entry);
      this.#entries.delete(key);
      entry = undefined;
    }
    if (entry !== undefined) {
      entry.count += 1;
      entry.last = info;
      return undefined;
    }
    if (this.#entries.size >= this.#deps.options.maxEntries) this.#evictOldest();
    this.#entries.set(key, { startedAt: now, count: 0, last: info });
    // Counts of closed windows still being written go into the log first, so it reads in order.
    if (this.#writes.size === 0) return this.#deps.write({ info, count: 1 });
    return Promise.allSettled([...this.#writes]).then(() => this.#deps.write({ info, count: 1 }));
  }

  /** Writes the counts of every window that has closed. */
  sweep(): void {
    const now = this.#deps.clock.now();
    for (const [key, entry] of this.#entries) {
      if (now - entry.startedAt < this.#deps.options.windowMs) continue;
      this.#flush(entry);
      this.#entries.delete(key);
    }
  }

  /** Writes every count still held (shutdown) and waits for the writes. */
  async close(): Promise<void> {
    for (const entry of this.#entries.values()) this.#flush(entry);
    this.#entries.clear();
    while (this.#writes.size > 0) await Promise.allSettled([...this.#writes]);
  }

  /** Triples tracked now (for tests of the bound). */
  get size(): number {
    return this.#entries.size;
  }

  #evictOldest(): void {
    const oldest = this.#entries.keys().next();
    if (oldest.done === true) return;
    const entry = this.#entries.get(oldest.value);
    if (entry !== undefined) this.#flush(entry);
    this.#entries.delete(oldest.value);
  }

  #flush(entry: Entry): void {
    if (entry.count === 0) return;
    const count = entry.count;
    entry.count = 0;
    const window = { from: new Date(entry.startedAt).toISOString(), to: new Date(entry.startedAt + this.#deps.options.windowMs).toISOString() };
    // close() waits for these writes; one that fails is reported, not thrown at a caller.
    const write = this.#deps.write({ info: entry.last, count, window }).catch((error: unknown) => this.#deps.onWriteError?.(error, count));
    this.#writes.add(write);
    void write.finally(() => this.#writes.delete(write));
  }
}
