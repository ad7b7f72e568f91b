/**
 * Follows the end of the audit log for any number of listeners with one query per interval.
 * Sequence numbers commit in order (appends are serialised on the audit head), so "every
 * event past the last one seen" is never missing an event that commits later with a lower
 * number. It polls only while someone listens; every server of a cluster polls the shared
 * log itself, so each sees every server's changes.
 *
 * A listener that wants history too (a resumed stream) subscribes first and then reads the
 * log up to where the tail has got: `catchUp` does both and hands over at the seam without a
 * gap or a repeat.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../store/index.js';
import { repeatEvery } from '../shared/repeat.js';

/** The public part of an audit event: what the event stream carries, never a request id or address. */
export interface TailEvent {
  readonly seq: number;
  readonly time: string;
  readonly action: string;
  readonly target: string | null;
  readonly actor: string;
  readonly data: Record<string, unknown>;
}

export type TailListener = (event: TailEvent) => void;

export interface AuditTailOptions {
  /** How often to look for new events while someone listens; 1 s by default. */
  readonly pollMs?: number;
  /** Rows per query, replay and polling alike. */
  readonly batchSize?: number;
}

/** Which events a reader wants; applied to replayed and live events alike. */
export type TailFilter = (event: TailEvent) => boolean;

export interface CatchUpOptions {
  /** Replay events after this sequence number; the current end of the log when absent. */
  readonly after?: number;
  /** Action families (`key` for `key.rotated`) to replay; all when absent. Narrows the replay query. */
  readonly families?: readonly string[];
  readonly filter: TailFilter;
  /** Receives each event once, in sequence order: replayed ones first, then live ones. May return a promise to pace the replay. */
  readonly deliver: (event: TailEvent) => void | Promise<void>;
  /** Checked between replayed events: true ends the replay early (the reader has gone). */
  readonly stopped?: () => boolean;
  /** Called with the starting point once it is known, before any event. */
  readonly onStart?: (after: number) => void;
}

export interface Subscription {
  /** Stops delivery; idempotent. */
  unsubscribe(): void;
}

export class AuditTail {
  readonly #db: Kysely<Database>;
  readonly #pollMs: number;
  readonly #batchSize: number;
  readonly #listeners = new Set<TailListener>();
  /** The highest sequence number delivered to listeners; undefined while not following. */
  #lastSeq: number | undefined;
  #starting: Promise<void> | undefined;
  #stopTimer: (() => void) | undefined;
  #polling: Promise<void> | undefined;
  #closed = false;
  /** Bumped on every start and stop, so a poll that outlived its run delivers nothing. */
  #run = 0;

  constructor(db: Kysely<Database>, options: AuditTailOptions = {}) {
    this.#db = db;
    this.#pollMs = options.pollMs ?? 1_000;
    this.#batchSize = options.batchSize ?? 500;
  }

  /** How many listeners are attached (for tests and metrics). */
  get listeners(): number {
    return this.#listeners.size;
  }

  /** The sequence number of the newest committed event. */
  async head(): Promise<number> {
    const row = await this.#db.selectFrom('audit_head').select('seq').where('id', '=', 1).executeTakeFirst();
    return Number(row?.seq ?? 0);
  }

  /**
   * Attaches a listener for events committed from now on and resolves once the tail knows
   * where it stands: every event after that point reaches the listener.
   */
  async subscribe(listener: TailListener): Promise<Subscription> {
    if (this.#closed) throw new Error('the audit tail is closed');
    this.#listeners.add(listener);
    const subscription: Subscription = { unsubscribe: () => this.#remove(listener) };
    try {
      await this.#start();
    } catch (error) {
      subscription.unsubscribe();
      throw error;
    }
    return subscription;
  }

  /**
   * Replays the log after `options.after` (or from now), then follows it live, delivering each
   * matching event once and in order. Resolves with the live subscription once the replay is
   * done; rejects (and detaches) if a replay query fails.
   */
  async catchUp(options: CatchUpOptions): Promise<Subscription> {
    // Live events wait here until the replay has reached them.
    let buffer: TailEvent[] | undefined = [];
    let delivered = -1;
    let live: Subscription | undefined;
    let failed = false;
    const send = (event: TailEvent) => {
      if (event.seq <= delivered || !options.filter(event)) return;
      delivered = event.seq;
      const paced = options.deliver(event);
      if (paced instanceof Promise) paced.catch(() => undefined);
    };
    live = await this.subscribe((event) => {
      if (failed) return;
      if (buffer) buffer.push(event);
      else send(event);
    });
    try {
      const after = options.after ?? (await this.head());
      delivered = after;
      options.onStart?.(after);
      // Subscribed first, so everything past the tail's position arrives live; read the log until
      // a short page says it has been read to its end (which is at or past that position).
      for (let cursor = after; ; ) {
        const rows = await this.#read(cursor, options.families);
        for (const event of rows) {
          if (options.stopped?.()) return live;
          cursor = event.seq;
          if (event.seq <= delivered || !options.filter(event)) continue;
          delivered = event.seq;
          await options.deliver(event);
        }
        if (rows.length < this.#batchSize || options.stopped?.()) break;
      }
      const waiting = buffer;
      buffer = undefined;
      for (const event of waiting) send(event);
      return live;
    } catch (error) {
      failed = true;
      live.unsubscribe();
      throw error;
    }
  }

  /** Stops polling and drops every listener. */
  close(): void {
    this.#closed = true;
    this.#listeners.clear();
    this.#stop();
  }

  #remove(listener: TailListener): void {
    this.#listeners.delete(listener);
    if (this.#listeners.size === 0) this.#stop();
  }

  #stop(): void {
    this.#run += 1;
    this.#stopTimer?.();
    this.#stopTimer = undefined;
    this.#lastSeq = undefined;
  }

  #start(): Promise<void> {
    if (this.#lastSeq !== undefined) return Promise.resolve();
    this.#starting ??= (async () => {
      try {
        const head = await this.head();
        // Everyone may have left (or the tail closed) while the head was read.
        if (this.#listeners.size === 0 || this.#closed) return;
        this.#run += 1;
        this.#lastSeq = head;
        this.#stopTimer = repeatEvery(this.#pollMs, () => this.poll());
      } finally {
        this.#starting = undefined;
      }
    })();
    return this.#starting;
  }

  /** Reads events past the last one delivered and hands them to every listener. */
  poll(): Promise<void> {
    this.#polling ??= this.#poll().finally(() => {
      this.#polling = undefined;
    });
    return this.#polling;
  }

  async #poll(): Promise<void> {
    const run = this.#run;
    for (;;) {
      const from = this.#lastSeq;
      if (from === undefined) return;
      const rows = await this.#read(from);
      for (const event of rows) {
        // Stopped (and perhaps restarted from a newer head) meanwhile: these rows are not for this run.
        if (this.#run !== run) return;
        this.#lastSeq = event.seq;
        for (const listener of this.#listeners) {
          try {
            listener(event);
          } catch {
            // One listener's failure is its own; the others still get the event.
          }
        }
      }
      if (rows.length < this.#batchSize) return;
    }
  }

  async #read(after: number, families?: readonly string[]): Promise<TailEvent[]> {
    let query = this.#db
      .selectFrom('audit_events')
      .select(['seq', 'time', 'action', 'target', 'actor', 'data'])
      .where('seq', '>', after)
      .orderBy('seq', 'asc')
      .limit(this.#batchSize);
    if (families !== undefined) {
      // Family names are lowercase letters only (checked by the caller), so LIKE needs no escaping.
      query = query.where((eb) => eb.or(families.map((family) => eb('action', 'like', `${family}.%`))));
    }
    const rows = await query.execute();
    return rows.map((row) => ({
      seq: Number(row.seq),
      time: row.time,
      action: row.action,
      target: row.target,
      actor: row.actor,
      data: JSON.parse(row.data) as Record<string, unknown>,
    }));
  }
}
