/**
 * A reader making the server compute or write without bound (red team): `POST /v1/audit/verify`
 * walks the whole chain, so one runs at a time per server (a second concurrent one is 429 with
 * Retry-After) and a body carries at most 1,000 checkpoints; `POST /v1/audit/checkpoints` writes
 * a line once per head and at most once a second, so alternating audited calls with checkpoints
 * cannot add a line per pair.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { describeEachDialect } from '../support/databases.js';
import { expectProblem, useContext } from '../http/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'keysmith-audit-abuse-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A gate the verification awaits while it holds the slot: closed, a test knows when one waits at it. */
function verifyGate() {
  let hold: Promise<void> | undefined;
  let release = (): void => undefined;
  let arrived = (): void => undefined;
  let waiting: Promise<void> = Promise.resolve();
  let fail: Error | undefined;
  return {
    gate: async () => {
      arrived();
      if (fail !== undefined) {
        const error = fail;
        fail = undefined;
        throw error;
      }
      await hold;
    },
    close() {
      hold = new Promise((resolve) => {
        release = resolve;
      });
      waiting = new Promise((resolve) => {
        arrived = resolve;
      });
    },
    open() {
      hold = undefined;
      release();
    },
    failNext(error: Error) {
      fail = error;
    },
    /** Resolves once a verification is at the gate, holding the slot. */
    waiting: () => waiting,
  };
}

describeEachDialect('audit abuse limits', (dialect) => {
  const file = join(dir, `${dialect}.jsonl`);
  const gate = verifyGate();
  const ctx = useContext(dialect, { checkpointsFile: file, auditVerifyGate: gate.gate });
  const lines = () => readFileSync(file, 'utf8').trim().split('\n');
  const verify = (token?: string, body?: unknown) => ctx().request({ method: 'POST', url: '/v1/audit/verify', ...(token ? { token } : {}), ...(body ? { body } : {}) });
  const checkpoint = (token?: string) => ctx().request({ method: 'POST', url: '/v1/audit/checkpoints', ...(token ? { token } : {}) });

  it('runs one verification at a time per server: a concurrent one is 429 with Retry-After, then the slot is free again', async () => {
    const reader = await ctx().token(['audit:read']);
    gate.close();
    const first = verify(reader);
    await gate.waiting();
    const second = await verify(reader);
    const problem = expectProblem(second, 429, 'ERR_RATE_LIMITED', 'rate_limited');
    expect(problem.detail).toMatch(/already running/);
    expect(second.headers['retry-after']).toBe('1');
    // Another caller, the root token included, waits its turn too: the guard is per server.
    expectProblem(await verify(), 429, 'ERR_RATE_LIMITED');
    gate.open();
    const done = await first;
    expect(done.statusCode, done.body).toBe(200);
    expect(done.json()).toMatchObject({ ok: true });
    expect((await verify(reader)).json()).toMatchObject({ ok: true });
  });

  it('gives the slot back when a verification fails', async () => {
    gate.failNext(new Error('the database went away'));
    expect((await verify()).statusCode).toBe(500);
    expect((await verify()).json()).toMatchObject({ ok: true });
  });

  it('refuses a body with more than 1,000 checkpoints, naming the field', async () => {
    const signed = (await checkpoint()).json() as { checkpoint: unknown };
    const problem = expectProblem(await verify(undefined, { checkpoints: Array.from({ length: 1_001 }, () => signed.checkpoint) }), 400, 'ERR_INVALID_REQUEST');
    expect(problem.detail).toMatch(/checkpoints/);
    expect(problem.detail).toMatch(/1000/);
    const ok = await verify(undefined, { checkpoints: Array.from({ length: 1_000 }, () => signed.checkpoint) });
    expect(ok.statusCode, ok.body).toBe(200);
    expect(ok.json()).toMatchObject({ ok: true });
  });

  it('writes an on-demand checkpoint once per head and at most once a second', async () => {
    ctx().clock.advance(1_000);
    const reader = await ctx().token(['audit:read']);
    const denied = await ctx().token([]);
    const first = await checkpoint(reader);
    expect(first.statusCode, first.body).toBe(200);
    const before = lines().length;
    // Alternate a call that writes an audit event (a refused scope) with a checkpoint: the head
    // moves every time, but no line is written within a second of the last.
    for (let i = 0; i < 10; i++) {
      expectProblem(await ctx().request({ method: 'GET', url: '/v1/keys', token: denied }), 403, 'ERR_FORBIDDEN');
      const refused = await checkpoint(reader);
      expect(expectProblem(refused, 429, 'ERR_RATE_LIMITED').detail).toMatch(/less than a second ago/);
      expect(refused.headers['retry-after']).toBe('1');
    }
    expect(lines()).toHaveLength(before);
    // A second later the moved head is written, once.
    ctx().clock.advance(1_000);
    const later = await checkpoint(reader);
    expect(later.statusCode, later.body).toBe(200);
    expect((later.json() as { sinks: string[] }).sinks).toEqual([file]);
    expect(lines()).toHaveLength(before + 1);
    // The same head again is answered at once, without a line, however soon.
    const again = await checkpoint(reader);
    expect(again.statusCode).toBe(200);
    expect(again.json()).toMatchObject({ sinks: [] });
    expect(lines()).toHaveLength(before + 1);
  });
});
