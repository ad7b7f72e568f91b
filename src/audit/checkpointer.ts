/**
 * Writes signed checkpoints of the head while the server runs: at most once per interval, and
 * only when the head moved, so an idle server writes nothing; and once more at shutdown. Every
 * sink gets every checkpoint; one failing sink does not stop the others, and the failure is
 * reported (a checkpoint not kept is a gap in the evidence, not a reason to stop serving).
 */
import type { Kysely } from 'kysely';
import type { Database } from '../store/index.js';
import type { Clock } from '../shared/clock.js';
import type { AuditLog } from './audit.js';
import { formatCheckpoint, type Checkpoint } from './checkpoints.js';
import type { CheckpointSink } from './checkpoint-sinks.js';

export interface CheckpointerDeps {
  readonly db: Kysely<Database>;
  readonly audit: AuditLog;
  readonly clock: Clock;
  readonly sinks: readonly CheckpointSink[];
  /** How often to look at the head; 60 s by default. */
  readonly intervalMs?: number;
  /** A sink that failed; the server logs it. */
  readonly onError?: (sink: string, error: Error) => void;
}

export interface WrittenCheckpoint {
  readonly checkpoint: Checkpoint;
  readonly line: string;
  /** The sinks that took it; empty when the head had not moved since the last one. */
  readonly sinks: readonly string[];
}

/** Thrown by `checkpoint({ minGapMs })` when the head moved but the last line was written too recently. */
export class CheckpointTooSoon extends Error {
  constructor(readonly retryAfterMs: number) {
    super(`a checkpoint was written less than ${retryAfterMs} ms ago`);
    this.name = 'CheckpointTooSoon';
  }
}

export class AuditCheckpointer {
  readonly #deps: CheckpointerDeps;
  #timer: NodeJS.Timeout | undefined;
  #lastSeq = 0;
  /** When the last line reached a sink (the injected clock), for `minGapMs`. */
  #lastWrittenAt: number | undefined;
  #running: Promise<unknown> = Promise.resolve();

  constructor(deps: CheckpointerDeps) {
    this.#deps = deps;
  }

  get sinks(): readonly string[] {
    return this.#deps.sinks.map((s) => s.name);
  }

  start(): void {
    if (this.#timer || this.#deps.sinks.length === 0) return;
    this.#timer = setInterval(() => {
      void this.checkpoint().catch((error: unknown) => this.#deps.onError?.('audit head', error instanceof Error ? error : new Error(String(error))));
    }, this.#deps.intervalMs ?? 60_000);
    this.#timer.unref();
  }

  /** Stops the timer and writes a last checkpoint if the head moved since the previous one. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.checkpoint().catch((error: unknown) => this.#deps.onError?.('audit head', error instanceof Error ? error : new Error(String(error))));
  }

  /**
   * Signs the head and hands it to every sink, unless that seq was already written by this
   * server (so asking often adds nothing). Runs one at a time. With `minGapMs` (on-demand
   * checkpoints) a moved head is not written within that long of the previous line: otherwise a
   * caller alternating any audited call with a checkpoint would add one line per pair.
   */
  checkpoint(options: { readonly minGapMs?: number } = {}): Promise<WrittenCheckpoint | undefined> {
    const next = this.#running.then(() => this.#write(options.minGapMs ?? 0));
    this.#running = next.catch(() => undefined);
    return next;
  }

  async #write(minGapMs: number): Promise<WrittenCheckpoint | undefined> {
    const now = this.#deps.clock.now();
    const checkpoint = await this.#deps.audit.checkpoint(this.#deps.db, new Date(now).toISOString());
    if (!checkpoint) return undefined;
    const line = formatCheckpoint(checkpoint);
    if (checkpoint.seq <= this.#lastSeq) return { checkpoint, line, sinks: [] };
    const since = this.#lastWrittenAt === undefined ? Infinity : now - this.#lastWrittenAt;
    // A clock stepped back waits one gap, not until it catches up.
    if (since < minGapMs) throw new CheckpointTooSoon(since < 0 ? minGapMs : minGapMs - since);
    const delivered: string[] = [];
    for (const sink of this.#deps.sinks) {
      try {
        await sink.write(line);
        delivered.push(sink.name);
      } catch (error) {
        this.#deps.onError?.(sink.name, error instanceof Error ? error : new Error(String(error)));
      }
    }
    if (delivered.length > 0) {
      this.#lastSeq = checkpoint.seq;
      this.#lastWrittenAt = now;
    }
    return { checkpoint, line, sinks: delivered };
  }
}
