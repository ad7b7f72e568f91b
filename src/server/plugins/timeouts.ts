/** Request, header and keep-alive timeouts for the node HTTP server Fastify (and the fast lanes) run in. */
import type { ServerOptions } from 'node:http';
import type { FastifyServerOptions } from 'fastify';

/**
 * A client that sends its request slowly holds a socket and a parser: node answers 408 and
 * closes the connection when the headers (`headersMs`) or the whole request, body included
 * (`requestMs`), take longer than allowed, and closes an idle kept-alive connection after
 * `keepAliveMs`. The fast lanes run inside the same node server, so they are covered too.
 */
export interface ServerTimeouts {
  readonly requestMs: number;
  readonly headersMs: number;
  readonly keepAliveMs: number;
}

export const DEFAULT_TIMEOUTS: ServerTimeouts = { requestMs: 30_000, headersMs: 10_000, keepAliveMs: 72_000 };

/** Fastify options for the timeouts; node checks them every `connectionsCheckingInterval`. */
export function timeoutOptions(given: Partial<ServerTimeouts> | undefined): Pick<FastifyServerOptions, 'requestTimeout' | 'keepAliveTimeout' | 'connectionTimeout'> & { http: ServerOptions } {
  const timeouts = { ...DEFAULT_TIMEOUTS, ...given };
  // Node refuses headers allowed longer than the whole request.
  const headersMs = Math.min(timeouts.headersMs, timeouts.requestMs);
  return {
    requestTimeout: timeouts.requestMs,
    keepAliveTimeout: timeouts.keepAliveMs,
    // No idle-socket timeout: an event stream is quiet between heartbeats, and the two above bound a slow client.
    connectionTimeout: 0,
    // Checked this often, so a timeout fires within half its length (node checks every 30 s by default).
    http: { headersTimeout: headersMs, connectionsCheckingInterval: Math.max(100, Math.min(headersMs, timeouts.requestMs) / 2) },
  };
}
