/**
 * JSON nested thousands deep used to overflow the stack (a 500). A body nested more than 64
 * levels is a 400 problem before anything walks it, and nothing is written. (Issue 9, section 4.)
 */
import { expect, it } from 'vitest';
import { describeEachDialect } from '../support/databases.js';
import { expectProblem, unique, useContext } from '../http/helpers.js';
import type { TestContext } from '../support/context.js';

async function counts(ctx: TestContext): Promise<number[]> {
  const out: number[] = [];
  for (const table of ['secrets', 'secret_versions', 'rotation_policies', 'audit_events'] as const) {
    const row = await ctx.store.db.selectFrom(table).select((eb) => eb.fn.countAll<number | string>().as('n')).executeTakeFirst();
    out.push(Number(row?.n ?? 0));
  }
  return out;
}

/** `{"<field>": {"a": {"a": [[…]]}}}` with the body nested `depth` levels in all. */
function deepBody(field: string, depth: number): string {
  const inner = Math.max(depth - 3, 0);
  return `{"${field}":{"a":{"b":${'['.repeat(inner)}${']'.repeat(inner)}}}}`;
}

describeEachDialect('deeply nested JSON bodies', (dialect) => {
  const ctx = useContext(dialect);
  const send = (method: 'PUT' | 'POST', url: string, payload: string) =>
    ctx().request({ method, url, payload, headers: { 'content-type': 'application/json' } });

  it.each([65, 5_000, 200_000])('refuses a secret value nested %i levels with 400 ERR_JSON_TOO_DEEP and writes nothing', async (depth) => {
    const before = await counts(ctx());
    const problem = expectProblem(await send('PUT', `/v1/secrets/${unique('deep')}`, deepBody('value', depth)), 400, 'ERR_JSON_TOO_DEEP', 'invalid_request');
    expect(problem.detail).toContain('64');
    expect(await counts(ctx())).toEqual(before);
  });

  it.each([65, 5_000])('refuses a rotation policy nested %i levels with 400 and writes nothing', async (depth) => {
    const before = await counts(ctx());
    expectProblem(await send('PUT', `/v1/rotation/policies/${unique('deep')}`, deepBody('policy', depth)), 400, 'ERR_JSON_TOO_DEEP');
    expect(await counts(ctx())).toEqual(before);
  });

  it('refuses a deep verify body the same way', async () => {
    expectProblem(await send('POST', '/v1/keys/verify', deepBody('key', 5_000)), 400, 'ERR_JSON_TOO_DEEP');
  });

  it('keeps a secret value nested to the limit, brackets inside strings not counted', async () => {
    const path = unique('deep');
    const res = await send('PUT', `/v1/secrets/${path}`, deepBody('value', 64));
    expect(res.statusCode, res.body).toBe(201);
    const text = await send('PUT', `/v1/secrets/${unique('deep')}`, JSON.stringify({ value: '['.repeat(5_000) }));
    expect(text.statusCode, text.body).toBe(201);
    const read = await ctx().request({ method: 'GET', url: `/v1/secrets/${path}` });
    expect(read.statusCode, read.body).toBe(200);
    expect(JSON.stringify(read.json().value)).toBe(`{"a":{"b":${'['.repeat(61)}${']'.repeat(61)}}}`);
  });
});
