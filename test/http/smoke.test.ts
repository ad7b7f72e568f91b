import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestContext, type TestContext } from '../support/context.js';
import { describeEachDialect } from '../support/databases.js';

describeEachDialect('keys API smoke', (dialect) => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext(dialect);
  });
  afterAll(async () => ctx.close());

  it('issues a key that then verifies as VALID', async () => {
    const created = await ctx.request({ method: 'POST', url: '/v1/keys', body: { owner: 'team-a', scopes: ['orders:read'] } });
    expect(created.statusCode).toBe(201);
    const { key, id } = created.json();
    const verified = await ctx.request({ method: 'POST', url: '/v1/keys/verify', body: { key } });
    expect(verified.json()).toMatchObject({ valid: true, code: 'VALID', keyId: id, owner: 'team-a' });
  });
});
