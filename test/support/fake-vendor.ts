/**
 * A fake SaaS key API that behaves like the real ones the `http` connector talks to:
 * - `POST /keys` (admin token) makes a key and answers 201 `{ id, secret }`; an account holds
 *   at most two active keys (409 beyond); an `Idempotency-Key` header replays the first answer
 *   for the same key, as Stripe does (a different body with the same key is a 422).
 * - `DELETE /keys/:id` (admin token) revokes: 204, or 404 for an unknown or foreign id.
 * - `GET /me` authenticated by an API key: 200 for an active key, 401 for a revoked or unknown one.
 * - every request is logged with the credential it used (`admin`, a key id, `unknown`, `none`).
 * - `failNextRevocations(n)` answers the next n revocations 503 (for retry tests).
 * Listens on 127.0.0.1 port 0; `close()` ends it and its sockets.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';

export interface FakeVendorKey {
  readonly id: string;
  readonly secret: string;
  readonly account: string;
  readonly name: string | null;
  revoked: boolean;
}

export interface FakeVendorRequest {
  readonly method: string;
  readonly path: string;
  /** `admin:<account>`, the key id used, `unknown` for a credential the vendor does not know, or `none`. */
  readonly credential: string;
  readonly status: number;
  readonly idempotencyKey: string | null;
}

export interface FakeVendor {
  readonly url: string;
  /** The admin token of the default account. */
  readonly adminToken: string;
  /** Adds another account and returns its admin token. */
  addAccount(name: string): string;
  readonly log: readonly FakeVendorRequest[];
  keys(account?: string): readonly FakeVendorKey[];
  activeKeys(account?: string): readonly FakeVendorKey[];
  /** Makes a key directly (the one a rotation starts from). */
  seedKey(account?: string): FakeVendorKey;
  failNextRevocations(count: number): void;
  /** Delays every answer (for timeout tests). */
  setDelay(ms: number): void;
  close(): Promise<void>;
}

export const MAX_ACTIVE_KEYS = 2;

export async function startFakeVendor(): Promise<FakeVendor> {
  const admins = new Map<string, string>(); // admin token → account
  const keys = new Map<string, FakeVendorKey>();
  const replays = new Map<string, { body: string; status: number; answer: unknown }>(); // account + idempotency key
  const log: FakeVendorRequest[] = [];
  let failRevocations = 0;
  let delayMs = 0;
  let counter = 0;

  const addAccount = (name: string): string => {
    const token = `adm_${name}_${randomBytes(12).toString('hex')}`;
    admins.set(token, name);
    return token;
  };
  const adminToken = addAccount('acme');

  const newKey = (account: string, name: string | null): FakeVendorKey => {
    counter += 1;
    const key: FakeVendorKey = { id: `vk_${counter}`, secret: `sk_fake_${randomBytes(18).toString('hex')}`, account, name, revoked: false };
    keys.set(key.id, key);
    return key;
  };
  const active = (account: string): FakeVendorKey[] => [...keys.values()].filter((k) => k.account === account && !k.revoked);

  const bearer = (req: IncomingMessage): string | undefined => {
    const header = req.headers.authorization;
    return header?.startsWith('Bearer ') ? header.slice(7) : undefined;
  };

  const handle = async (req: IncomingMessage, body: string): Promise<{ status: number; answer?: unknown; credential: string }> => {
    const url = new URL(req.url ?? '/', 'http://vendor');
    const token = bearer(req);
    const account = token === undefined ? undefined : admins.get(token);
    const keyByToken = token === undefined ? undefined : [...keys.values()].find((k) => k.secret === token);
    const credential = token === undefined ? 'none' : account ? `admin:${account}` : keyByToken ? keyByToken.id : 'unknown';

    if (req.method === 'GET' && url.pathname === '/me') {
      if (!keyByToken || keyByToken.revoked) return { status: 401, answer: { error: 'invalid_api_key' }, credential };
      return { status: 200, answer: { key: keyByToken.id, account: keyByToken.account }, credential };
    }
    if (req.method === 'POST' && url.pathname === '/keys') {
      if (!account) return { status: 401, answer: { error: 'invalid_admin_token' }, credential };
      const idem = req.headers['idempotency-key'];
      const replayKey = typeof idem === 'string' ? `${account}\u0000${idem}` : undefined;
      if (replayKey) {
        const earlier = replays.get(replayKey);
        if (earlier) {
          if (earlier.body !== body) return { status: 422, answer: { error: 'idempotency_key_reused' }, credential };
          return { status: earlier.status, answer: earlier.answer, credential };
        }
      }
      if (active(account).length >= MAX_ACTIVE_KEYS) {
        return { status: 409, answer: { error: 'too_many_keys', message: `at most ${MAX_ACTIVE_KEYS} active keys per account` }, credential };
      }
      let name: string | null = null;
      try {
        const parsed = body === '' ? {} : (JSON.parse(body) as { name?: unknown });
        name = typeof parsed.name === 'string' ? parsed.name : null;
      } catch {
        return { status: 400, answer: { error: 'invalid_json' }, credential };
      }
      const key = newKey(account, name);
      const answer = { id: key.id, secret: key.secret, name, created: true };
      if (replayKey) replays.set(replayKey, { body, status: 201, answer });
      return { status: 201, answer, credential };
    }
    const match = /^\/keys\/([^/]+)$/.exec(url.pathname);
    if (req.method === 'DELETE' && match) {
      if (!account) return { status: 401, answer: { error: 'invalid_admin_token' }, credential };
      if (failRevocations > 0) {
        failRevocations -= 1;
        return { status: 503, answer: { error: 'temporarily_unavailable' }, credential };
      }
      const key = keys.get(decodeURIComponent(match[1]!));
      if (!key || key.account !== account) return { status: 404, answer: { error: 'no_such_key' }, credential };
      key.revoked = true;
      return { status: 204, credential };
    }
    // Like many real APIs, quotes the request line back (query string included).
    return { status: 404, answer: { error: 'no_such_route', request: `${req.method} ${req.url}` }, credential };
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      void (async () => {
        if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
        const outcome = await handle(req, Buffer.concat(chunks).toString('utf8'));
        const idem = req.headers['idempotency-key'];
        log.push({
          method: req.method ?? '',
          path: new URL(req.url ?? '/', 'http://vendor').pathname,
          credential: outcome.credential,
          status: outcome.status,
          idempotencyKey: typeof idem === 'string' ? idem : null,
        });
        if (res.destroyed) return;
        if (outcome.answer === undefined) {
          res.writeHead(outcome.status).end();
        } else {
          res.writeHead(outcome.status, { 'content-type': 'application/json' }).end(JSON.stringify(outcome.answer));
        }
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    adminToken,
    addAccount,
    log,
    keys: (account = 'acme') => [...keys.values()].filter((k) => k.account === account),
    activeKeys: (account = 'acme') => active(account),
    seedKey: (account = 'acme') => newKey(account, 'seed'),
    failNextRevocations: (count) => {
      failRevocations = count;
    },
    setDelay: (ms) => {
      delayMs = ms;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
