/**
 * Reads of secret values are counted in memory per secret, version, reader and minute, and
 * flushed in batches, so a read never writes in the request path. `flush()` before answering
 * "who read this" makes this server's counts exact; a failed flush puts its counts back.
 * On SQLite a flush is one transaction, for the reason usage flushes are (src/keys/usage.ts):
 * one fsync on the main thread, not one per statement.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import type { Database, StoreDialect } from '../store/index.js';
import { repeatEvery } from '../shared/repeat.js';

interface Tally {
  secretId: string;
  version: number;
  principal: string;
  minute: number;
  count: number;
  last: number;
}

const BATCH = 100;

export class ReadTally {
  readonly #db: Kysely<Database>;
  readonly #oneTransaction: boolean;
  #tallies = new Map<string, Tally>();
  #stopTimer: (() => void) | undefined;
  #flushing: Promise<void> | undefined;

  constructor(db: Kysely<Database>, dialect: StoreDialect) {
    this.#db = db;
    this.#oneTransaction = dialect.singleWriter;
  }

  record(secretId: string, version: number, principal: string, at: number): void {
    const minute = at - (at % 60_000);
    const key = tallyKey(secretId, version, principal, minute);
    const tally = this.#tallies.get(key);
    if (tally === undefined) this.#tallies.set(key, { secretId, version, principal, minute, count: 1, last: at });
    else {
      tally.count += 1;
      if (at > tally.last) tally.last = at;
    }
  }

  start(intervalMs: number): void {
    this.#stopTimer = repeatEvery(intervalMs, () => this.flush());
  }

  async stop(): Promise<void> {
    this.#stopTimer?.();
    this.#stopTimer = undefined;
    await this.flush();
  }

  async flush(): Promise<void> {
    while (this.#flushing) await this.#flushing;
    if (this.#tallies.size === 0) return;
    this.#flushing = this.#write().finally(() => {
      this.#flushing = undefined;
    });
    await this.#flushing;
  }

  async #write(): Promise<void> {
    const all = [...this.#tallies.values()];
    this.#tallies = new Map();
    const pending = [...all];
    try {
      if (this.#oneTransaction) await this.#db.transaction().execute((trx) => writeChunks(trx, pending));
      else await writeChunks(this.#db, pending);
    } catch (error) {
      // Put back what was not written (all of it when the transaction rolled back).
      for (const t of this.#oneTransaction ? all : pending) {
        const key = tallyKey(t.secretId, t.version, t.principal, t.minute);
        const newer = this.#tallies.get(key);
        if (newer === undefined) this.#tallies.set(key, t);
        else {
          newer.count += t.count;
          newer.last = Math.max(newer.last, t.last);
        }
      }
      throw error;
    }
  }
}

/** Upserts tallies in chunks, yielding between statements; written chunks leave `pending`. */
async function writeChunks(executor: Kysely<Database> | Transaction<Database>, pending: Tally[]): Promise<void> {
  while (pending.length > 0) {
    const chunk = pending.slice(0, BATCH);
    await executor
      .insertInto('secret_reads')
      .values(
        chunk.map((t) => ({
          secret_id: t.secretId,
          version: t.version,
          principal: t.principal,
          minute: new Date(t.minute).toISOString(),
          count: t.count,
          last_read_at: new Date(t.last).toISOString(),
        })),
      )
      .onConflict((oc) =>
        oc.columns(['secret_id', 'version', 'principal', 'minute']).doUpdateSet({
          count: sql<number>`secret_reads.count + excluded.count`,
          last_read_at: sql<string>`case when excluded.last_read_at > secret_reads.last_read_at then excluded.last_read_at else secret_reads.last_read_at end`,
        }),
      )
      .execute();
    pending.splice(0, chunk.length);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

function tallyKey(secretId: string, version: number, principal: string, minute: number): string {
  return `${secretId}\u0000${version}\u0000${principal}\u0000${minute}`;
}
