/**
 * Keeps every server's caches honest. Each change to a key or a secret writes an audit event
 * whose target is its id, and audit sequence numbers commit in order (appends are serialised
 * on the audit head), so polling `audit_events` past the last seen sequence tells this server
 * which cached rows another server changed. One small indexed query a second replaces
 * re-reading every cached row on a short TTL.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../store/index.js';
import { repeatEvery } from '../shared/repeat.js';

export class ChangeFeed {
  readonly #db: Kysely<Database>;
  readonly #targetPrefix: string;
  readonly #onChange: (target: string) => void;
  #lastSeq: number | undefined;
  #stopTimer: (() => void) | undefined;
  #polling: Promise<void> | undefined;

  /** `onChange` is called with every changed target that starts with `targetPrefix`. */
  constructor(db: Kysely<Database>, targetPrefix: string, onChange: (target: string) => void) {
    this.#db = db;
    this.#targetPrefix = targetPrefix;
    this.#onChange = onChange;
  }

  /** Reads changes since the last poll (the first poll only records where the log ends). */
  poll(): Promise<void> {
    this.#polling ??= this.#poll().finally(() => {
      this.#polling = undefined;
    });
    return this.#polling;
  }

  async #poll(): Promise<void> {
    if (this.#lastSeq === undefined) {
      const head = await this.#db.selectFrom('audit_head').select('seq').where('id', '=', 1).executeTakeFirst();
      this.#lastSeq = Number(head?.seq ?? 0);
      return;
    }
    for (;;) {
      const rows = await this.#db
        .selectFrom('audit_events')
        .select(['seq', 'target'])
        .where('seq', '>', this.#lastSeq)
        .orderBy('seq', 'asc')
        .limit(1000)
        .execute();
      for (const row of rows) if (row.target?.startsWith(this.#targetPrefix)) this.#onChange(row.target);
      if (rows.length === 0) return;
      this.#lastSeq = Number(rows[rows.length - 1]!.seq);
      if (rows.length < 1000) return;
    }
  }

  async start(intervalMs: number): Promise<void> {
    await this.poll();
    this.#stopTimer = repeatEvery(intervalMs, () => this.poll());
  }

  stop(): void {
    this.#stopTimer?.();
    this.#stopTimer = undefined;
  }
}
