/** The postgres connector when the database cannot be reached: no server needed. */
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ConnectorError, PostgresConnector, type ConnectorContext } from '../../src/rotation/connectors/index.js';

const ADMIN_PASSWORD = 'S3cret-Admin-Pw-0042';

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function ctx(url: unknown, current?: ConnectorContext['current']): ConnectorContext {
  return {
    runId: 'rot_pg_err',
    settings: { adminSecret: 'db/admin', roles: ['app_a', 'app_b'], timeout: '2s' },
    ...(current ? { current } : {}),
    readSecret: async () => url as string,
  };
}

describe('postgres connector without a reachable database', () => {
  const connector = new PostgresConnector();

  it('makes a refused connection a retryable error that shows neither password', async () => {
    const url = `postgres://admin:${ADMIN_PASSWORD}@127.0.0.1:${await closedPort()}/orders`;
    const error = await connector.create(ctx(url)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectorError);
    expect(error).toMatchObject({ code: 'ERR_CONNECTOR_FAILED', step: 'create', retryable: true });
    expect((error as Error).message).toContain('ECONNREFUSED');
    expect(JSON.stringify({ m: (error as Error).message, s: (error as Error).stack })).not.toContain(ADMIN_PASSWORD);
    const tested = await connector.test(ctx(url), { value: { username: 'app_a', password: 'Role-Password-123' } }).catch((e: unknown) => e);
    expect(tested).toMatchObject({ code: 'ERR_CONNECTOR_FAILED', retryable: true });
    expect((tested as Error).message).not.toContain('Role-Password-123');
  });

  it('refuses an admin secret that is not a postgres URL', async () => {
    const error = await connector.create(ctx('mysql://x')).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ERR_CONNECTOR_SETTINGS_INVALID', retryable: false });
  });

  it('refuses a current credential for a role it does not manage, and revoke without a current credential', async () => {
    const url = `postgres://admin@127.0.0.1:${await closedPort()}/orders`;
    const foreign = await connector.create(ctx(url, { value: { username: 'someone_else', password: 'x' } })).catch((e: unknown) => e);
    expect(foreign).toMatchObject({ code: 'ERR_CONNECTOR_REJECTED', retryable: false });
    const blind = await connector.revoke(ctx(url), { value: { username: 'app_a' } }).catch((e: unknown) => e);
    expect(blind).toMatchObject({ code: 'ERR_CONNECTOR_REJECTED', retryable: false });
    expect((blind as Error).message).toContain('current credential');
  });

  it('does nothing at set: clients read the vault', async () => {
    expect(await connector.set(ctx('postgres://x@127.0.0.1/db'))).toMatchObject({ skipped: true });
  });
});
