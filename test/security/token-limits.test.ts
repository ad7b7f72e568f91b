/**
 * A token never makes a token stronger than itself: a minted or rotated management token ends no
 * later than the token that made it and stays inside its IP allowlist; a secret scope's path
 * qualifier names a path a secret can have. (Issue 9, section 4.)
 */
import { expect, it } from 'vitest';
import type { KeyRecordWire } from '../../src/contract/index.js';
import { describeEachDialect } from '../support/databases.js';
import { DAY, MINUTE, auditAfter, auditHead, expectNothingWritten, expectProblem, idOf, iso, problemFields, useContext } from '../http/helpers.js';

type Issued = KeyRecordWire & { key: string };

describeEachDialect('tokens never outlive nor out-reach their parent', (dialect) => {
  const ctx = useContext(dialect);

  const mint = (body: Record<string, unknown>, token?: string, remoteAddress = '127.0.0.1') =>
    ctx().app.inject({
      method: 'POST',
      url: '/v1/tokens',
      remoteAddress,
      headers: { authorization: `Bearer ${token ?? ctx().rootToken}`, 'content-type': 'application/json' },
      payload: JSON.stringify(body),
    });
  const rotate = (id: string, body: Record<string, unknown>, token: string, remoteAddress = '127.0.0.1') =>
    ctx().app.inject({
      method: 'POST',
      url: `/v1/tokens/${id}/rotate`,
      remoteAddress,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      payload: JSON.stringify(body),
    });
  const issued = async (body: Record<string, unknown>, token?: string, remoteAddress?: string): Promise<Issued> => {
    const res = await mint(body, token, remoteAddress);
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as Issued;
  };
  /** The reproduction's parent: one hour, 127.0.0.1 only. */
  const shortParent = () => issued({ scopes: ['tokens:create', 'tokens:rotate', 'tokens:read', 'keys:read'], ttl: '1h', ipAllowlist: ['127.0.0.1/32'] });

  it('clamps a minted token asking for 90 days to its parent’s expiry and gives it the parent’s allowlist', async () => {
    const parent = await shortParent();
    const after = await auditHead(ctx());
    const child = await issued({ scopes: ['keys:read'], ttl: '90d' }, parent.key);
    expect(child.expiresAt).toBe(parent.expiresAt);
    expect(child.ipAllowlist).toEqual(['127.0.0.1/32']);
    const event = (await auditAfter(ctx(), after)).find((e) => e.action === 'token.issued' && e.target === child.id);
    expect(event?.data).toMatchObject({ expiresAt: parent.expiresAt, expiryClampedTo: parent.id });
    // The default lifetime (30 days) is clamped too.
    const byDefault = await issued({ scopes: ['keys:read'] }, parent.key);
    expect(byDefault.expiresAt).toBe(parent.expiresAt);
    // A shorter lifetime is kept as asked.
    const shorter = await issued({ scopes: ['keys:read'], ttl: '30m' }, parent.key);
    expect(shorter.expiresAt).toBe(iso(ctx().clock.now() + 30 * MINUTE));
    // The child is refused from an address the parent could not use either.
    const outside = await ctx().app.inject({ method: 'GET', url: '/v1/tokens?limit=1', remoteAddress: '192.0.2.1', headers: { authorization: `Bearer ${child.key}` } });
    expectProblem(outside, 401, 'ERR_UNAUTHENTICATED');
  });

  it('clamps an explicit expiresAt past the parent’s end', async () => {
    const parent = await shortParent();
    const child = await issued({ scopes: ['keys:read'], expiresAt: iso(ctx().clock.now() + 10 * DAY) }, parent.key);
    expect(child.expiresAt).toBe(parent.expiresAt);
  });

  it('refuses a child allowlist outside the parent’s with 403 naming the entry, and writes nothing', async () => {
    const parent = await shortParent();
    for (const ipAllowlist of [['10.0.0.0/8'], ['127.0.0.1/32', '0.0.0.0/0'], ['127.0.0.0/8'], ['::/0']]) {
      const res = await expectNothingWritten(ctx(), () => mint({ scopes: ['keys:read'], ipAllowlist }, parent.key));
      const problem = expectProblem(res, 403, 'ERR_ALLOWLIST_ESCALATION', 'forbidden');
      expect(problemFields(problem)).toEqual(['ipAllowlist']);
      expect(problem.detail).toContain(parent.id);
    }
    // An explicit null (any address) does not escape either: it inherits.
    const inherits = await issued({ scopes: ['keys:read'], ipAllowlist: null }, parent.key);
    expect(inherits.ipAllowlist).toEqual(['127.0.0.1/32']);
  });

  it('accepts a narrower allowlist inside the parent’s, IPv4 and IPv6', async () => {
    const parent = await issued({ scopes: ['tokens:create', 'keys:read'], ipAllowlist: ['10.0.0.0/8', '2001:db8::/32'] });
    const child = await issued({ scopes: ['keys:read'], ipAllowlist: ['10.1.0.0/16', '10.2.3.4', '2001:db8:1::/48'] }, parent.key, '10.9.9.9');
    expect(child.ipAllowlist).toEqual(['10.1.0.0/16', '10.2.3.4/32', '2001:db8:1::/48']);
    expectProblem(await mint({ scopes: ['keys:read'], ipAllowlist: ['2001:db9::/32'] }, parent.key, '10.9.9.9'), 403, 'ERR_ALLOWLIST_ESCALATION');
  });

  it('a token rotating itself gets a successor that ends when it would have', async () => {
    const parent = await shortParent();
    ctx().clock.advance(10 * MINUTE);
    const res = await rotate(parent.id, { ttl: '90d' }, parent.key);
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json()).toMatchObject({ expiresAt: parent.expiresAt, ipAllowlist: ['127.0.0.1/32'] });
    // Without a ttl the successor would live as long as the old one did: clamped all the same.
    const again = await rotate(res.json().id as string, {}, res.json().key as string);
    expect(again.statusCode, again.body).toBe(201);
    expect(again.json().expiresAt).toBe(parent.expiresAt);
  });

  it('a token rotating another token gives it at most its own lifetime and allowlist', async () => {
    const parent = await shortParent();
    const other = await issued({ scopes: ['keys:read'], ttl: '60d' });
    expect(other.ipAllowlist).toBeNull();
    const after = await auditHead(ctx());
    const res = await rotate(other.id, {}, parent.key);
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json()).toMatchObject({ expiresAt: parent.expiresAt, ipAllowlist: ['127.0.0.1/32'] });
    const events = await auditAfter(ctx(), after);
    expect(events.find((e) => e.action === 'token.issued')?.data).toMatchObject({ expiryClampedTo: parent.id });
    // A token allowed outside the rotator's allowlist cannot be rotated by it.
    const wide = await issued({ scopes: ['keys:read'], ipAllowlist: ['10.0.0.0/8'] });
    const refused = await expectNothingWritten(ctx(), () => rotate(wide.id, {}, parent.key));
    expectProblem(refused, 403, 'ERR_ALLOWLIST_ESCALATION');
  });

  it('leaves tokens made by an unbounded parent as they were', async () => {
    const parent = await issued({ scopes: ['tokens:create', 'keys:read'], ttl: '90d' });
    const child = await issued({ scopes: ['keys:read'], ttl: '10d' }, parent.key);
    expect(child.expiresAt).toBe(iso(ctx().clock.now() + 10 * DAY));
    expect(child.ipAllowlist).toBeNull();
    expect(idOf(child.key)).toBe(child.id);
  });
});

describeEachDialect('secret scopes name paths a secret can have', (dialect) => {
  const ctx = useContext(dialect);

  it.each([
    'secrets:read:payments/../*',
    'secrets:read:../*',
    'secrets:write:payments/./x',
    'secrets:admin:a//b',
    'secrets:read:/payments/*',
    'secrets:read:payments/',
    'secrets:read:Payments/*',
  ])('refuses %s with 400 naming the scope, and writes nothing', async (scope) => {
    const res = await expectNothingWritten(ctx(), () => ctx().request({ method: 'POST', url: '/v1/tokens', body: { scopes: ['keys:read', scope] } }));
    const problem = expectProblem(res, 400, 'ERR_INVALID_REQUEST', 'invalid_request');
    expect(problem.detail).toContain(`"${scope}"`);
    expect(problemFields(problem)).toEqual(['scopes']);
  });

  it('still accepts path-limited secret scopes', async () => {
    const res = await ctx().request({ method: 'POST', url: '/v1/tokens', body: { scopes: ['secrets:read:payments/*', 'secrets:write:payments/stripe/api-key', 'secrets:read:*'] } });
    expect(res.statusCode, res.body).toBe(201);
  });
});

