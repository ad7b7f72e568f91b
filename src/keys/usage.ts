/**
 * Usage is counted in memory on the verify path and flushed to the database in batches
 * (per key, per minute, per outcome), so verification never writes in the request path.
 * A failed flush puts its counts back; `stop()` flushes what is pending on a clean shutdown.
 *
 * On SQLite a flush is one transaction: every statement runs on the main thread, and each
 * commit waits for an fsync (synchronous=FULL), so a commit per statement would stall
 * verification dozens of times per flush. The small statements still yield to the event loop
 * between them; cached verifications never wait for the database.
 */
import { sql, type Kysely } from 'kysely';
import type { Database, StoreDialect } from '../store/index.js';
import { VERIFY_CODES, type UsageSink, type VerifyCode } from './verifier.js';
import { repeatEvery } from '../shared/repeat.js';

interface LastUse {
  at: number;
  ip: string | null;
  userAgent: string | null;
}

export interface UsageMinute {
  readonly minute: string;
  readonly counts: Partial<Record<VerifyCode, number>>;
  readonly total: number;
}

export interface KeyUsage {
  readonly keyId: string;
  readonly since: string;
  readonly lastUsedAt: string | null;
  readonly lastUsedIp: string | null;
  readonly lastUsedUserAgent: string | null;
  readonly totals: Partial<Record<VerifyCode, number>>;
  readonly minutes: UsageMinute[];
}

const OUTCOMES = VERIFY_CODES;
const OUTCOME_INDEX = Object.fromEntries(OUTCOMES.map((code, i) => [code, i])) as Record<VerifyCode, number>;
// Small statements: on SQLite each one runs on the main thread, so a long one is a latency spike.
const BATCH = 100;

interface UsageRow {
  key_id: string;
  minute: string;
  outcome: string;
  count: number;
}

/** A key's pending counts by minute, with the minute last counted at hand: nearly every call counts in it. */
interface KeyMinutes {
  lastMinute: number;
  last: Uint32Array;
  readonly byMinute: Map<number, Uint32Array>;
}

export class UsageRecorder implements UsageSink {
  readonly #db: Kysely<Database>;
  /** keyId → minute start (ms) → counts by outcome index. No strings built per call. */
  #counts = new Map<string, KeyMinutes>();
  #lastUse = new Map<string, LastUse>();
  /** When each key's last use was last written; a key is written at most once a minute. */
  readonly #lastWritten = new Map<string, number>();
  #stopTimer: (() => void) | undefined;
  #flushing: Promise<void> | undefined;

  readonly #oneTransaction: boolean;

  constructor(db: Kysely<Database>, dialect: StoreDialect) {
    this.#db = db;
    this.#oneTransaction = dialect.singleWriter;
  }

  record(keyId: string, outcome: VerifyCode, at: number, ip: string | undefined, userAgent: string | undefined): void {
    this.#add(keyId, at - (at % 60_000), OUTCOME_INDEX[outcome], 1);
    if (outcome === 'VALID') this.noteUse(keyId, at, ip, userAgent);
  }

  /** Notes a use (last time, IP, user agent) without counting an outcome. */
  noteUse(keyId: string, at: number, ip: string | undefined, userAgent: string | undefined): void {
    const last = this.#lastUse.get(keyId);
    if (last === undefined) {
      this.#lastUse.set(keyId, { at, ip: ip ?? null, userAgent: userAgent ?? null });
    } else if (at >= last.at) {
      last.at = at;
      // Equal text is left as it is: a gateway sends the same address and user agent again and
      // again, and a long-lived entry pointing at each new string costs the young-generation GC.
      if (last.ip !== (ip ?? null)) last.ip = ip ?? null;
      if (last.userAgent !== (userAgent ?? null)) last.userAgent = userAgent ?? null;
    }
  }

  #add(keyId: string, minute: number, outcomeIndex: number, count: number): void {
    const minutes = this.#counts.get(keyId);
    if (minutes !== undefined && minutes.lastMinute === minute) {
      minutes.last[outcomeIndex]! += count;
      return;
    }
    let counts = minutes?.byMinute.get(minute);
    if (counts === undefined) {
      counts = new Uint32Array(OUTCOMES.length);
      if (minutes === undefined) this.#counts.set(keyId, { lastMinute: minute, last: counts, byMinute: new Map([[minute, counts]]) });
      else minutes.byMinute.set(minute, counts);
    }
    if (minutes !== undefined) {
      minutes.lastMinute = minute;
      minutes.last = counts;
    }
    counts[outcomeIndex]! += count;
  }

  get pending(): number {
    return this.#counts.size + this.#lastUse.size;
  }

  start(intervalMs: number): void {
    this.#stopTimer = repeatEvery(intervalMs, () => this.flush());
  }

  async stop(): Promise<void> {
    this.#stopTimer?.();
    this.#stopTimer = undefined;
    await this.flush({ force: true });
  }

  /**
   * Writes pending counts; concurrent callers share one flush. Last-use times are written at
   * most once a minute per key unless `force` (reads that need them exact, and shutdown).
   */
  async flush(options: { force?: boolean } = {}): Promise<void> {
    while (this.#flushing) await this.#flushing;
    if (this.#counts.size === 0 && this.#lastUse.size === 0) return;
    this.#flushing = this.#write(options.force === true).finally(() => {
      this.#flushing = undefined;
    });
    await this.#flushing;
  }

  async #write(force: boolean): Promise<void> {
    const rows: UsageRow[] = [];
    for (const [keyId, minutes] of this.#counts) {
      for (const [minute, counts] of minutes.byMinute) {
        const minuteIso = new Date(minute).toISOString();
        counts.forEach((count, i) => {
          if (count > 0) rows.push({ key_id: keyId, minute: minuteIso, outcome: OUTCOMES[i]!, count });
        });
      }
    }
    const uses: Array<[string, LastUse]> = [];
    const later = new Map<string, LastUse>();
    for (const [keyId, use] of this.#lastUse) {
      const written = this.#lastWritten.get(keyId);
      if (force || written === undefined || use.at - written >= 60_000) uses.push([keyId, use]);
      else later.set(keyId, use);
    }
    this.#counts = new Map();
    this.#lastUse = later;
    const allRows = [...rows];
    const allUses = [...uses];
    try {
      if (this.#oneTransaction) await this.#db.transaction().execute((trx) => writeBatches(trx, rows, uses));
      else await writeBatches(this.#db, rows, uses);
    } catch (error) {
      // Put back what was not written (all of it when the transaction rolled back) so a later flush writes it.
      const lostRows = this.#oneTransaction ? allRows : rows;
      const lostUses = this.#oneTransaction ? allUses : uses;
      if (!this.#oneTransaction) this.#noteWritten(allUses.slice(0, allUses.length - uses.length));
      for (const row of lostRows) this.#add(row.key_id, Date.parse(row.minute), OUTCOME_INDEX[row.outcome as VerifyCode], row.count);
      for (const [keyId, use] of lostUses) {
        const newer = this.#lastUse.get(keyId);
        if (!newer || newer.at < use.at) this.#lastUse.set(keyId, use);
      }
      throw error;
    }
    this.#noteWritten(allUses);
  }

  #noteWritten(uses: ReadonlyArray<[string, LastUse]>): void {
    for (const [keyId, use] of uses) this.#lastWritten.set(keyId, use.at);
  }

  /** Reads usage since a time, after flushing what this server holds. */
  async read(keyId: string, sinceMs: number): Promise<Omit<KeyUsage, 'lastUsedAt' | 'lastUsedIp' | 'lastUsedUserAgent'>> {
    await this.flush({ force: true });
    const since = new Date(sinceMs - (sinceMs % 60_000)).toISOString();
    const rows = await this.#db
      .selectFrom('key_usage')
      .select(['minute', 'outcome', 'count'])
      .where('key_id', '=', keyId)
      .where('minute', '>=', since)
      .orderBy('minute', 'asc')
      .execute();
    const minutes = new Map<string, { counts: Partial<Record<VerifyCode, number>>; total: number }>();
    const totals: Partial<Record<VerifyCode, number>> = {};
    for (const row of rows) {
      const outcome = row.outcome as VerifyCode;
      const count = Number(row.count);
      let minute = minutes.get(row.minute);
      if (!minute) {
        minute = { counts: {}, total: 0 };
        minutes.set(row.minute, minute);
      }
      minute.counts[outcome] = (minute.counts[outcome] ?? 0) + count;
      minute.total += count;
      totals[outcome] = (totals[outcome] ?? 0) + count;
    }
    return {
      keyId,
      since,
      totals,
      minutes: [...minutes].map(([minute, value]) => ({ minute, counts: value.counts, total: value.total })),
    };
  }
}

/**
 * Writes rows and last uses in small statements, a turn of the event loop between them,
 * removing from both arrays what has been written.
 */
async function writeBatches(db: Kysely<Database>, rows: UsageRow[], uses: Array<[string, LastUse]>): Promise<void> {
  while (rows.length > 0) {
    const chunk = rows.slice(0, BATCH);
    await db
      .insertInto('key_usage')
      .values(chunk)
      .onConflict((oc) => oc.columns(['key_id', 'minute', 'outcome']).doUpdateSet({ count: sql<number>`key_usage.count + excluded.count` }))
      .execute();
    rows.splice(0, chunk.length);
    await yieldToEventLoop();
  }
  while (uses.length > 0) {
    const chunk = uses.slice(0, BATCH);
    await db
      .insertInto('key_last_use')
      .values(
        chunk.map(([keyId, use]) => ({
          key_id: keyId,
          used_at: new Date(use.at).toISOString(),
          ip: use.ip,
          user_agent: use.userAgent?.slice(0, 200) ?? null,
        })),
      )
      .onConflict((oc) =>
        oc
          .column('key_id')
          .doUpdateSet({ used_at: sql<string>`excluded.used_at`, ip: sql<string>`excluded.ip`, user_agent: sql<string>`excluded.user_agent` })
          .where('key_last_use.used_at', '<', sql<string>`excluded.used_at`),
      )
      .execute();
    uses.splice(0, chunk.length);
    await yieldToEventLoop();
  }
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
