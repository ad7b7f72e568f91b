/**
 * The shared tail of the audit log behind `GET /v1/events`: one query per poll however many
 * listen, and a replay that hands over to live delivery without a gap or a repeat while other
 * connections keep appending, on every dialect.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { KyselyPlugin } from 'kysely';
import { AuditTail, type TailEvent } from '../../src/audit/index.js';
import { testAuditLog } from '../support/context.js';
import { createTestStore, describeEachDialect, type TestStore } from '../support/databases.js';

const TIME = '2026-11-01T00:00:00.000Z';

describeEachDialect('audit tail', (dialect) => {
  let t: TestStore;
  let tails: AuditTail[];
  beforeEach(async () => {
    t = await createTestStore(dialect);
    // As every server's log does from its first start: the keyed-chain marker is event #1.
    await audit.keyChain(t.store.db, TIME);
    tails = [];
  });
  afterEach(async () => {
    for (const tail of tails) tail.close();
    await t.cleanup();
  });

  const audit = testAuditLog();
  const append = (action: string, target: string | null = null, data: Record<string, unknown> = {}) => audit.record(t.store.db, { actor: 'system:test' }, { action, target, data }, TIME);
  const tailOf = (options: ConstructorParameters<typeof AuditTail>[1], db = t.store.db) => {
    const tail = new AuditTail(db, options);
    tails.push(tail);
    return tail;
  };

  it('reads the log once per poll however many listen, and hands every listener every new event', async () => {
    let queries = 0;
    const counting: KyselyPlugin = {
      transformQuery: (args) => {
        queries += 1;
        return args.node;
      },
      transformResult: async (args) => args.result,
    };
    await append('key.issued', 'key_before');
    const tail = tailOf({ pollMs: 3_600_000 }, t.store.db.withPlugin(counting));
    const seen: TailEvent[][] = [];
    for (let i = 0; i < 20; i++) {
      const mine: TailEvent[] = [];
      seen.push(mine);
      await tail.subscribe((event) => mine.push(event));
    }
    await append('key.rotated', 'key_a', { successor: 'key_b' });
    await append('auth.failed');
    queries = 0;
    await tail.poll();
    expect(queries).toBe(1);
    for (const mine of seen) expect(mine.map((event) => [event.seq, event.action, event.target])).toEqual([[3, 'key.rotated', 'key_a'], [4, 'auth.failed', null]]);
    expect(seen[0]![0]).toEqual({ seq: 3, time: TIME, action: 'key.rotated', target: 'key_a', actor: 'system:test', data: { successor: 'key_b' } });
  });

  it('stops polling when the last listener leaves, and refuses listeners once closed', async () => {
    const tail = tailOf({ pollMs: 5 });
    const a = await tail.subscribe(() => undefined);
    const b = await tail.subscribe(() => undefined);
    expect(tail.listeners).toBe(2);
    a.unsubscribe();
    b.unsubscribe();
    b.unsubscribe();
    expect(tail.listeners).toBe(0);
    tail.close();
    await expect(tail.subscribe(() => undefined)).rejects.toThrow(/closed/);
  });

  it('keeps following for new listeners after the last one left in the middle of a delivery', async () => {
    const tail = tailOf({ pollMs: 10 });
    const waitFor = async (check: () => boolean) => {
      for (let i = 0; i < 200 && !check(); i++) await delay(10);
      return check();
    };
    let first = 0;
    const leaving = await tail.subscribe(() => {
      first += 1;
      leaving.unsubscribe();
    });
    await append('key.issued', 'key_1');
    await append('key.issued', 'key_2');
    expect(await waitFor(() => first > 0)).toBe(true);
    expect(tail.listeners).toBe(0);
    const got: string[] = [];
    await tail.subscribe((event) => got.push(event.target ?? ''));
    await append('key.revoked', 'key_3');
    // The timer brings it: nothing polls by hand here.
    expect(await waitFor(() => got.length > 0)).toBe(true);
    expect(got).toEqual(['key_3']);
  });

  it('replays after a point in small pages, then goes live, without a gap or a repeat while writers append', async () => {
    for (let i = 0; i < 10; i++) await append(i % 2 === 0 ? 'key.updated' : 'auth.failed', `key_${i}`);
    const tail = tailOf({ pollMs: 5, batchSize: 3 });
    let writing = true;
    const writer = async (name: string) => {
      for (let i = 0; i < 25; i++) {
        await append(i % 3 === 0 ? 'auth.failed' : 'key.updated', `${name}_${i}`);
        if (i % 5 === 0) await delay(2);
      }
    };
    const writers = Promise.all([writer('w1'), writer('w2')]).finally(() => (writing = false));
    const readers: Array<{ after: number; got: number[] }> = [];
    // Readers join at different moments, each resuming from a different point.
    for (const after of [0, 4, 9, 15, 30]) {
      const got: number[] = [];
      readers.push({ after, got });
      await tail.catchUp({
        after,
        families: ['key'],
        filter: (event) => event.action.startsWith('key.'),
        deliver: async (event) => {
          got.push(event.seq);
          // A slow reader: the replay waits for it.
          if (event.seq % 7 === 0) await delay(1);
        },
      });
      await delay(3);
    }
    await writers;
    expect(writing).toBe(false);
    // A poll the timer started before the last write may be running: the second one starts after it.
    await tail.poll();
    await tail.poll();
    const all = await t.store.db.selectFrom('audit_events').select(['seq', 'action']).orderBy('seq').execute();
    for (const { after, got } of readers) {
      const expected = all.filter((row) => Number(row.seq) > after && row.action.startsWith('key.')).map((row) => Number(row.seq));
      expect(got, `reader after ${after}`).toEqual(expected);
    }
  });

  it('starts at the end of the log when no point is given, and reports it', async () => {
    await append('key.issued', 'key_old');
    const tail = tailOf({ pollMs: 5 });
    const got: string[] = [];
    let start: number | undefined;
    await tail.catchUp({ filter: () => true, onStart: (after) => (start = after), deliver: (event) => void got.push(event.target ?? '') });
    expect(start).toBe(2);
    await append('key.revoked', 'key_new');
    await tail.poll();
    await tail.poll();
    expect(got).toEqual(['key_new']);
  });
});
