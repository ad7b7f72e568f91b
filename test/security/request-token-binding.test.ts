/**
 * A request token belongs to the principal that used it (issue 9, section 4). Replaying another
 * principal's token used to answer 200 when the guessed value was right and 409 when wrong; now
 * both are the same 409, nothing is written, and the attempt is audited without the value.
 */
import { expect, it } from 'vitest';
import { describeEachDialect } from '../support/databases.js';
import { auditAfter, auditHead, expectProblem, idOf, unique, useContext } from '../http/helpers.js';
import type { TestContext } from '../support/context.js';

async function vaultRows(ctx: TestContext): Promise<number[]> {
  const out: number[] = [];
  for (const table of ['secrets', 'secret_versions', 'secret_stages'] as const) {
    const row = await ctx.store.db.selectFrom(table).select((eb) => eb.fn.countAll<number | string>().as('n')).executeTakeFirst();
    out.push(Number(row?.n ?? 0));
  }
  return out;
}

describeEachDialect('request tokens are bound to their principal', (dialect) => {
  const ctx = useContext(dialect);
  const put = (path: string, body: Record<string, unknown>, token: string) => ctx().request({ method: 'PUT', url: `/v1/secrets/${path}`, body, token });

  it('answers another principal the same 409 whether its guess is right or wrong, writes nothing and audits both', async () => {
    const owner = await ctx().token(['secrets:write', 'secrets:read']);
    const attacker = await ctx().token(['secrets:write']);
    const path = `${unique('payments')}/stripe`;
    const made = await put(path, { value: 'sk_live_right', requestToken: 'deploy-7' }, owner);
    expect(made.statusCode, made.body).toBe(201);

    const before = await vaultRows(ctx());
    const head = await auditHead(ctx());
    const right = expectProblem(await put(path, { value: 'sk_live_right', requestToken: 'deploy-7' }, attacker), 409, 'ERR_SECRET_REQUEST_TOKEN_REUSED', 'conflict');
    const wrong = expectProblem(await put(path, { value: 'sk_live_wrong', requestToken: 'deploy-7' }, attacker), 409, 'ERR_SECRET_REQUEST_TOKEN_REUSED', 'conflict');
    const { requestId: _a, ...rightBody } = right;
    const { requestId: _b, ...wrongBody } = wrong;
    expect(rightBody).toEqual(wrongBody);
    expect(right.detail).not.toMatch(/sk_live|version/);
    expect(await vaultRows(ctx())).toEqual(before);

    const events = await auditAfter(ctx(), head);
    expect(events.map((e) => e.action)).toEqual(['secret.put.replay_refused', 'secret.put.replay_refused']);
    for (const event of events) {
      expect(event.actor).toBe(idOf(attacker));
      expect(event.data).toEqual({ path, requestToken: 'deploy-7', reason: 'other_principal' });
      expect(JSON.stringify(event)).not.toContain('sk_live');
    }
    // The value is untouched.
    const read = await ctx().request({ method: 'GET', url: `/v1/secrets/${path}`, token: owner });
    expect(read.json()).toMatchObject({ value: 'sk_live_right', version: 1 });
  });

  it('still replays for the principal that used the token, and audits the replay', async () => {
    const owner = await ctx().token(['secrets:write']);
    const path = `${unique('payments')}/retry`;
    expect((await put(path, { value: 'v1', requestToken: 'retry-1' }, owner)).statusCode).toBe(201);
    const head = await auditHead(ctx());
    const again = await put(path, { value: 'v1', requestToken: 'retry-1' }, owner);
    expect(again.statusCode, again.body).toBe(200);
    expect(again.json()).toMatchObject({ version: 1, replayed: true });
    const events = await auditAfter(ctx(), head);
    expect(events.map((e) => [e.action, e.actor, e.data])).toEqual([['secret.put.replayed', idOf(owner), { path, requestToken: 'retry-1', version: 1 }]]);
    // Its own mismatched retry is refused and audited as such.
    expectProblem(await put(path, { value: 'v2', requestToken: 'retry-1' }, owner), 409, 'ERR_SECRET_REQUEST_TOKEN_REUSED');
    const refused = (await auditAfter(ctx(), head)).at(-1);
    expect(refused).toMatchObject({ action: 'secret.put.replay_refused', data: { path, requestToken: 'retry-1', reason: 'other_value', version: 1 } });
  });

  it('lets another principal write the secret with a token of its own', async () => {
    const first = await ctx().token(['secrets:write']);
    const second = await ctx().token(['secrets:write']);
    const path = `${unique('payments')}/shared`;
    expect((await put(path, { value: 'a', requestToken: 'tok-a' }, first)).statusCode).toBe(201);
    const res = await put(path, { value: 'b', requestToken: 'tok-b' }, second);
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json()).toMatchObject({ version: 2, replayed: false });
  });
});
