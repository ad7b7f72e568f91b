// The bench's baseline: a bare Fastify 5 app with one `POST /v1/keys/verify` route that parses
// the same JSON body as the real route and answers a constant of about the size of a real
// VALID answer. No auth, no schema, no hooks, no logger. Plain JavaScript run by plain node
// (no loader), like the compiled server in dist/.
//
//   node bench/baseline-server.mjs [--addr 127.0.0.1:0]
//
// Prints one JSON line {"event":"listening","url":…} on stdout; stops on SIGTERM/SIGINT.
import Fastify from 'fastify';

const addrIndex = process.argv.indexOf('--addr');
const addr = addrIndex > 0 ? process.argv[addrIndex + 1] : '127.0.0.1:0';
const [host, port] = [addr.slice(0, addr.lastIndexOf(':')), Number(addr.slice(addr.lastIndexOf(':') + 1))];

const ANSWER = Object.freeze({
  valid: true,
  code: 'VALID',
  keyId: 'key_0000000000000000000000',
  owner: 'bench-team-00',
  env: 'live',
  scopes: ['orders:read'],
  expiresAt: '2030-01-01T00:00:00.000Z',
});

const app = Fastify({ logger: false });
app.post('/v1/keys/verify', async (request) => {
  // Touch the parsed body as the real route does, then answer the constant.
  const body = /** @type {{ key?: unknown }} */ (request.body);
  if (typeof body?.key !== 'string') throw Object.assign(new Error('key is required'), { statusCode: 400 });
  return ANSWER;
});

await app.listen({ host, port });
const address = app.server.address();
const actualPort = typeof address === 'object' && address !== null ? address.port : port;
process.stdout.write(`${JSON.stringify({ event: 'listening', url: `http://${host}:${actualPort}` })}\n`);

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    if (stopping) return;
    stopping = true;
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
