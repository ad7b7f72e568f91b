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
    await this.flush();
  }

  /** Writes pending counts in one transaction; concurrent callers share one flush. */
  async flush(): Promise<void> {
    while (this.#flushing) await this.#flushing;
    if (this.#counts.size === 0 && this.#lastUse.size === 0) return;
    this.#flushing = this.#write().finally(() => {
      this.#flushing = undefined;
    });
    await this.#flushing;
  }

  async #write(): Promise<void> {
    const counts = this.#counts;
    const lastUse = this.#lastUse;
    this.#counts = new Map();
    this.#lastUse = new Map();
    try {
      await this.#db.transaction().execute(async (trx) => {
        const rows = [...counts].map(([slot, count]) => {
          const [keyId, minute, outcome] = slot.split('\n') as [string, string, string];
          return { key_id: keyId, minute: new Date(Number(minute)).toISOString(), outcome, count };
        });
        for (let i = 0; i < rows.length; i += 500) {
          await trx
            .insertInto('key_usage')
            .values(rows.slice(i, i + 500))
            .onConflict((oc) =>
              oc.columns(['key_id', 'minute', 'outcome']).doUpdateSet({ count: sql<number>`key_usage.count + excluded.count` }),
            )
            .execute();
        }
        for (const [keyId, use] of lastUse) {
          const at = new Date(use.at).toISOString();
          await trx
            .updateTable('api_keys')
            .set({ last_used_at: at, last_used_ip: use.ip, last_used_user_agent: use.userAgent?.slice(0, 200) ?? null })
            .where('id', '=', keyId)
            .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<', at)]))
            .execute();
        }
      });
    } catch (error) {
      // Put the counts back so a later flush writes them.
      for (const [slot, count] of counts) this.#counts.set(slot, (this.#counts.get(slot) ?? 0) + count);
      for (const [keyId, use] of lastUse) {
        const newer = this.#lastUse.get(keyId);
        if (!newer || newer.at < use.at) this.#lastUse.set(keyId, use);
      }
      throw error;
    }
  }

  /** Reads usage since a time, after flushing what this server holds. */
  async read(keyId: string, sinceMs: number): Promise<Omit<KeyUsage, 'lastUsedAt' | 'lastUsedIp' | 'lastUsedUserAgent'>> {
    await this.flush();
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
