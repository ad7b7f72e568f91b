/**
 * An HTTP request that only goes where the egress allowlist says. The host is resolved once,
 * every address is checked, and the socket connects to the checked address (a `lookup` that
 * answers it): a DNS record that changes between the check and the connect (rebinding) cannot
 * move the connection. A new connection per request (no agent pool), so no socket opened for
 * one host is reused for another. Redirects are never followed: a 3xx is returned as it is.
 */
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import { EgressRefusedError, type Egress, type ResolvedAddress } from './egress.js';

export interface OutboundRequest {
  readonly method?: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string;
  readonly signal?: AbortSignal;
  /** The answer's text is cut at this many bytes (1 MiB by default). */
  readonly maxBytes?: number;
}

export interface OutboundAnswer {
  readonly status: number;
  readonly text: string;
}

/** The network failure of a request that was allowed (refusals are EgressRefusedError). */
export class OutboundNetworkError extends Error {
  readonly code: string;
  constructor(code: string) {
    super(`network error (${code})`);
    this.name = 'OutboundNetworkError';
    this.code = code;
  }
}

const DEFAULT_MAX_BYTES = 1024 * 1024;

/** A lookup that answers only the addresses already checked, whatever the name. */
function pinnedLookup(addresses: readonly ResolvedAddress[]): LookupFunction {
  const first = addresses[0]!;
  return ((_hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    if (options?.all) callback(null, addresses.map(({ address, family }) => ({ address, family })));
    else callback(null, first.address, first.family);
  }) as unknown as LookupFunction;
}

/** A slow DNS answer must not outlive the request's deadline. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * Sends one request through the allowlist. Throws EgressRefusedError before any connection
 * when the host, port or an address is not allowed; OutboundNetworkError when the connection
 * fails; the signal's reason when aborted.
 */
export async function egressRequest(egress: Egress, urlText: string, init: OutboundRequest = {}): Promise<OutboundAnswer> {
  const url = new URL(urlText);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new EgressRefusedError(url.hostname, 'only http and https URLs can be called');
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
  const addresses = await untilAborted(egress.resolveChecked(url.hostname, port), init.signal);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const options: RequestOptions = {
    method: init.method ?? 'GET',
    host,
    port,
    path: `${url.pathname}${url.search}`,
    headers: { ...(init.headers ?? {}), ...(init.body !== undefined ? { 'content-length': String(Buffer.byteLength(init.body)) } : {}) },
    agent: false,
    lookup: pinnedLookup(addresses),
    ...(init.signal ? { signal: init.signal } : {}),
  };
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  const maxBytes = init.maxBytes ?? DEFAULT_MAX_BYTES;
  return new Promise<OutboundAnswer>((resolve, reject) => {
    const req = send(options, (response: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      response.on('data', (chunk: Buffer) => {
        if (bytes >= maxBytes) return;
        chunks.push(chunk);
        bytes += chunk.length;
        if (bytes >= maxBytes) response.destroy();
      });
      const done = (): void => resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).subarray(0, maxBytes).toString('utf8') });
      response.on('end', done);
      response.on('close', done);
      response.on('error', () => (bytes >= maxBytes ? done() : reject(new OutboundNetworkError('ECONNRESET'))));
    });
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (init.signal?.aborted) reject(init.signal.reason);
      else reject(new OutboundNetworkError(error.code ?? 'network error'));
    });
    req.end(init.body);
  });
}
