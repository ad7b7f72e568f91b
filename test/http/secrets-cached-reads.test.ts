/**
 * The server caches opened values with the local KEK provider (its default). Every change must
 * still show at once: the cached answer is dropped with its secret, never patched.
 */
import { expect, it } from 'vitest';
import type { SecretValueWire } from '../../src/contract/index.js';
import { describeEachDialect } from '../support/databases.js';
import { expectProblem, unique, useContext } from './helpers.js';

describeEachDialect('reads with opened values cached', (dialect) => {
  const ctx = useContext(dialect, { secretPolicy: { cacheOpenedValues: true } });
  const put = (path: string, body: Record<string, unknown>) => ctx().request({ method: 'PUT', url: `/v1/secrets/${path}`, body });
  const read = async (path: string, query = ''): Promise<SecretValueWire> => {
    const res = await ctx().request({ method: 'GET', url: `/v1/secrets/${path}${query}` });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    return res.json() as SecretValueWire;
  };

  it('answers the same bytes twice, then the new version at once after a put, promote and rollback', async () => {
    const path = `${unique('cached')}/api-key`;
    await put(path, { value: 'v-one' });
    const first = await ctx().request({ method: 'GET', url: `/v1/secrets/${path}` });
    const again = await ctx().request({ method: 'GET', url: `/v1/secrets/${path}` });
    expect(again.body).toBe(first.body);
    expect(Object.keys(first.json()).sort()).toEqual(['createdAt', 'id', 'path', 'stages', 'value', 'version']);
    await put(path, { value: { user: 'svc', password: 'v-two' } });
    expect(await read(path)).toMatchObject({ version: 2, value: { user: 'svc', password: 'v-two' }, stages: ['current'] });
    expect(await read(path, '?stage=previous')).toMatchObject({ version: 1, value: 'v-one', stages: ['previous'] });
    await put(path, { value: 'v-three', stage: 'pending' });
    await ctx().request({ method: 'POST', url: `/v1/secrets/${path}/promote` });
    expect(await read(path)).toMatchObject({ version: 3, value: 'v-three' });
    await ctx().request({ method: 'POST', url: `/v1/secrets/${path}/rollback` });
    expect(await read(path)).toMatchObject({ version: 2, stages: ['current'] });
  });

  it('stops answering a destroyed version and a deleted secret at once', async () => {
    const path = `${unique('cached')}/db`;
    await put(path, { value: 'old' });
    await put(path, { value: 'new' });
    expect((await read(path, '?version=1')).value).toBe('old');
    await ctx().request({ method: 'POST', url: `/v1/secrets/${path}/destroy`, body: { versions: [1] } });
    expectProblem(await ctx().request({ method: 'GET', url: `/v1/secrets/${path}?version=1` }), 404, 'ERR_SECRET_VERSION_DESTROYED');
    expect((await read(path)).value).toBe('new');
    await ctx().request({ method: 'DELETE', url: `/v1/secrets/${path}` });
    expectProblem(await ctx().request({ method: 'GET', url: `/v1/secrets/${path}` }), 404, 'ERR_SECRET_SCHEDULED_FOR_DELETION');
  });

  it('counts cached reads per reader like any other', async () => {
    const path = `${unique('cached')}/counted`;
    await put(path, { value: 'x' });
    const reader = await ctx().token(['secrets:read']);
    for (let i = 0; i < 3; i++) expect((await ctx().request({ method: 'GET', url: `/v1/secrets/${path}`, token: reader })).statusCode).toBe(200);
    const readers = (await ctx().request({ method: 'GET', url: `/v1/secrets/${path}/readers` })).json() as { total: number; readers: Array<{ reads: number }> };
    expect(readers.total).toBe(3);
    expect(readers.readers).toEqual([expect.objectContaining({ reads: 3 })]);
  });
});
