/**
 * The verify fast lane. `POST /v1/keys/verify` is what gateways call on every request, and
 * Fastify's per-request machinery (request and reply objects, hooks, content-type parsing,
 * schema plumbing, serialization) cost more than the verification itself. So a listening
 * server sees each request here first, in node's own request handler, and answers the common
 * case itself: the exact path, a JSON body of known length, a cached management token holding
 * `keys:verify`, a body that the route's own JSON parser and schema validator accept.
 *
 * Everything else goes to Fastify untouched, and Fastify answers as if the lane were not
 * there: a request the lane turns down before reading the body is handed over as it came; one
 * whose body the lane has read (invalid JSON, a schema failure, a key whose row had to be
 * loaded and failed) is handed over with its body replayed (`replayBody`, the route's
 * preParsing hook), so the route reads, parses and refuses it itself. The lane never writes a
 * refusal, an audit event or a problem body: those stay in one place. What the lane answers,
 * it answers with the route's own pieces: the same access check, the same answer function
 * (metrics included), the same request ids, the same headers.
 */
import { createServer, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { FastifyServerFactory, preParsingHookHandler } from 'fastify';
import type { KeyService } from '../keys/index.js';
import type { VerifyKeyBodyWire } from '../contract/index.js';
import { checkAccess } from './plugins/auth.js';
import { VERIFY_PATH, VERIFY_SCOPE, type VerifyAnswerer } from './routes/keys/verify-answer.js';

/** Larger bodies go to Fastify unread; a real verify body is a few hundred bytes. */
const FAST_BODY_MAX = 16 * 1024;
const JSON_TYPE = 'application/json';
const JSON_TYPE_UTF8 = 'application/json; charset=utf-8';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

interface ReadBody {
  readonly chunks: readonly Buffer[];
  readonly error: Error | undefined;
}

/** A body the lane read but did not answer, waiting on its request for the route to read. */
const REPLAY = Symbol('keysmith.replay-body');
type ReplayCarrier = IncomingMessage & { [REPLAY]?: ReadBody | undefined };

export interface FastVerifyDeps {
  readonly keys: KeyService;
  readonly answer: VerifyAnswerer;
  /** The route's JSON body parser: the value, or `undefined` for any body it refuses. */
  readonly parseJson: (text: string) => unknown;
  /** The route's body validator. */
  readonly validBody: (body: unknown) => body is VerifyKeyBodyWire;
  /** The server's request id generator (the one Fastify's `genReqId` uses). */
  readonly requestId: () => string;
  /** The HTTP request counter for `POST /v1/keys/verify` answered 200. */
  readonly counted: { inc(): void };  /** Whether the address is throttled after failed authentications: such calls are Fastify's to refuse. */
  readonly throttled?: ((ip: string | undefined) => boolean) | undefined;
}

export interface FastVerifyLane {
  /** Answers the request, or hands it to `next` (Fastify's handler). */
  handle(req: IncomingMessage, res: ServerResponse, next: Handler): void;
  /** From now on every request goes to Fastify (which answers 503 while closing). */
  close(): void;
}

export function createFastVerifyLane(deps: FastVerifyDeps): FastVerifyLane {
  let open = true;

  const respond = (res: ServerResponse, json: string): void => sendJson(res, deps.requestId(), json, deps.counted);

  const handOver = (req: IncomingMessage, res: ServerResponse, next: Handler, body: ReadBody): void => {
    (req as ReplayCarrier)[REPLAY] = body;
    next(req, res);
  };

  const answerBody = (req: IncomingMessage, res: ServerResponse, next: Handler, chunks: Buffer[], error: Error | undefined): void => {
    if (error !== undefined) return handOver(req, res, next, { chunks, error });
    const text = chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8');
    const body = deps.parseJson(text);
    if (body === undefined || !deps.validBody(body)) return handOver(req, res, next, { chunks, error });
    const result = deps.answer(body, req.socket.remoteAddress, req.headers['user-agent']);
    if (typeof result === 'string') return respond(res, result);
    // A failed load is the route's to report; it verifies again and answers as it would.
    result.then(
      (json) => respond(res, json),
      () => handOver(req, res, next, { chunks, error }),
    );
  };

  const readBody = (req: IncomingMessage, res: ServerResponse, next: Handler, length: number): void => {
    if (req.readableLength === length) {
      answerBody(req, res, next, [req.read() as Buffer], undefined);
      return;
    }
    const chunks: Buffer[] = [];
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
    };
    const done = (error?: Error) => {
      req.removeListener('data', onData);
      req.removeListener('end', done);
      req.removeListener('error', done);
      answerBody(req, res, next, chunks, error);
    };
    req.on('data', onData);
    req.on('end', done);
    req.on('error', done);
  };

  return {
    handle(req, res, next) {
      if (!open || req.method !== 'POST' || req.url !== VERIFY_PATH) return next(req, res);
      const headers = req.headers;
      const type = headers['content-type'];
      if ((type !== JSON_TYPE && type !== JSON_TYPE_UTF8) || headers['transfer-encoding'] !== undefined) return next(req, res);
      const length = Number(headers['content-length']);
      if (!(length > 0 && length <= FAST_BODY_MAX)) return next(req, res);
      if (deps.throttled?.(req.socket.remoteAddress) === true) return next(req, res);
      // request.ip without a trusted proxy (the lane is off behind one).
      const access = checkAccess(deps.keys, headers.authorization, req.socket.remoteAddress, VERIFY_SCOPE);
      if (access instanceof Promise) {
        // The token's row is loading: the route's guard waits for the same load and decides.
        access.catch(ignore);
        return next(req, res);
      }
      if (!access.ok) return next(req, res);
      // The body usually comes in the packet that brought the headers, and node's parser pushes
      // it onto the request right after this handler returns: take it from there in one read,
      // without the stream events, or else wait for it.
      process.nextTick(readBody, req, res, next, length);
    },
    close() {
      open = false;
    },
  };
}

/** A 200 JSON answer with the headers Fastify's routes send, in their order; counted. */
export function sendJson(res: ServerResponse, requestId: string, json: string, counted: { inc(): void }): void {
  res.writeHead(200, ['x-request-id', requestId, 'content-type', JSON_TYPE_UTF8, 'content-length', String(Buffer.byteLength(json))]);
  res.end(json);
  counted.inc();
}

/** Lanes in front of Fastify, tried in order; the last one hands over to Fastify. */
export function chainLanes(lanes: readonly FastVerifyLane[]): FastVerifyLane {
  // `next` is Fastify's handler, the same on every call: the chain is built once, not per request.
  let builtFor: Handler | undefined;
  let chained: Handler | undefined;
  return {
    handle(req, res, next) {
      if (builtFor !== next || chained === undefined) {
        builtFor = next;
        chained = lanes.reduceRight<Handler>((after, lane) => (request, response) => lane.handle(request, response, after), next);
      }
      chained(req, res);
    },
    close() {
      for (const lane of lanes) lane.close();
    },
  };
}

/**
 * The verify route's preParsing hook: gives the route the body the fast lane read, as a
 * stream that ends (or fails) as the request did.
 */
export const replayBody: preParsingHookHandler = (request, _reply, payload, done) => {
  const carrier = request.raw as ReplayCarrier;
  const read = carrier[REPLAY];
  if (read === undefined) {
    done(null, payload);
    return;
  }
  carrier[REPLAY] = undefined;
  done(
    null,
    new Readable({
      // Emitted once the route reads, when its listeners are in place.
      read() {
        for (const chunk of read.chunks) this.push(chunk);
        if (read.error !== undefined) this.destroy(read.error);
        else this.push(null);
      },
    }),
  );
};

/**
 * A Fastify `serverFactory` that puts the lane in front of Fastify's handler, configured as
 * Fastify configures the HTTP/1 server it makes itself. `lane()` is read per request, so the
 * lane can be made after the Fastify instance it needs.
 */
export function fastLaneServerFactory(lane: () => FastVerifyLane | undefined): FastifyServerFactory {
  return (handler, fastifyOptions) => {
    // Fastify has filled in its defaults by the time it calls the factory.
    const options = fastifyOptions as unknown as ServerTimeouts;
    const server: Server = createServer(options.http ?? {}, (req, res) => {
      const current = lane();
      if (current === undefined) handler(req, res);
      else current.handle(req, res, handler);
    });
    server.keepAliveTimeout = options.keepAliveTimeout;
    server.requestTimeout = options.requestTimeout;
    server.setTimeout(options.connectionTimeout);
    if (options.maxRequestsPerSocket > 0) server.maxRequestsPerSocket = options.maxRequestsPerSocket;
    return server;
  };
}

interface ServerTimeouts {
  readonly http?: ServerOptions;
  readonly keepAliveTimeout: number;
  readonly requestTimeout: number;
  readonly connectionTimeout: number;
  readonly maxRequestsPerSocket: number;
}

function ignore(): void {}
