/**
 * Usage is counted in memory on the verify path and flushed to the database in batches
 * (per key, per minute, per outcome), so verification never writes in the request path.
 * A failed flush puts its counts back; `stop()` flushes what is pending on a clean shutdown.
 */
import { sql, type Kysely } from 'kysely';
import type { Database } from '../store/index.js';
import type { UsageSink, VerifyCode } from './verifier.js';

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

export class UsageRecorder implements UsageSink {
  readonly #db: Kysely<Database>;
  /** `${keyId}\n${minuteMs}\n${outcome}` → count */
  #counts = new Map<string, number>();
  #lastUse = new Map<string, LastUse>();
  /** When each key's last use was last written; a key is written at most once a minute. */
  readonly #lastWritten = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  record(keyId: string, outcome: VerifyCode, at: number, ip: string | undefined, userAgent: string | undefined): void {
    const minute = at - (at % 60_000);
    const slot = `${keyId}\n${minute}\n${outcome}`;
    this.#counts.set(slot, (this.#counts.get(slot) ?? 0) + 1);
    if (outcome === 'VALID') {
      const last = this.#lastUse.get(keyId);
      if (last === undefined) {
        this.#lastUse.set(keyId, { at, ip: ip ?? null, userAgent: userAgent ?? null });
      } else if (at >= last.at) {
        last.at = at;
        last.ip = ip ?? null;
        last.userAgent = userAgent ?? null;
      }
    }
  }

  get pending(): number {
    return this.#counts.size + this.#lastUse.size;
  }

  start(intervalMs: number): void {
    this.#timer = setInterval(() => {
      this.flush().catch(() => undefined);
    }, intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
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
    const counts = this.#counts;
    const lastUse = new Map<string, LastUse>();
    const later = new Map<string, LastUse>();
    for (const [keyId, use] of this.#lastUse) {
      const written = this.#lastWritten.get(keyId);
      (force || written === undefined || use.at - written >= 60_000 ? lastUse : later).set(keyId, use);
    }
    this.#counts = new Map();
    this.#lastUse = later;
    const rows = [...counts].map(([slot, count]) => {
      const [keyId, minute, outcome] = slot.split('\n') as [string, string, string];
      return { key_id: keyId, minute: new Date(Number(minute)).toISOString(), outcome, count };
    });
    const uses = [...lastUse];
    try {
      // Small transactions with a turn of the event loop between them: with SQLite every
      // statement runs on the main thread, and one long flush would stall verification.
      while (rows.length > 0) {
        const chunk = rows.slice(0, 500);
        await this.#db
          .insertInto('key_usage')
          .values(chunk)
          .onConflict((oc) => oc.columns(['key_id', 'minute', 'outcome']).doUpdateSet({ count: sql<number>`key_usage.count + excluded.count` }))
          .execute();
        rows.splice(0, chunk.length);
        await yieldToEventLoop();
      }
      while (uses.length > 0) {
        const chunk = uses.splice(0, 100);
        await this.#db.transaction().execute(async (trx) => {
          for (const [keyId, use] of chunk) {
            const at = new Date(use.at).toISOString();
            await trx
              .updateTable('api_keys')
              .set({ last_used_at: at, last_used_ip: use.ip, last_used_user_agent: use.userAgent?.slice(0, 200) ?? null })
              .where('id', '=', keyId)
              .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<', at)]))
              .execute();
          }
        });
        for (const [keyId, use] of chunk) {
          this.#lastWritten.set(keyId, use.at);
          lastUse.delete(keyId);
        }
        await yieldToEventLoop();
      }
    } catch (error) {
      // Put back what was not written so a later flush writes it.
      for (const row of rows) {
        const slot = `${row.key_id}\n${Date.parse(row.minute)}\n${row.outcome}`;
        this.#counts.set(slot, (this.#counts.get(slot) ?? 0) + row.count);
      }
      for (const [keyId, use] of lastUse) {
        const newer = this.#lastUse.get(keyId);
        if (!newer || newer.at < use.at) this.#lastUse.set(keyId, use);
      }
      throw error;
    }
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

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
