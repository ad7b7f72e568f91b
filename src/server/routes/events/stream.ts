/**
 * `GET /v1/events`: key, secret, rotation, incident and KEK changes as server-sent events, so
 * consumers and deploy tooling refresh when a credential changes. The source is the audit log
 * (each change writes its event in its own transaction), so the stream is durable: a client
 * that reconnects with `Last-Event-ID` (or `?since=`) gets what it missed from the log, then
 * live events, with no gap or repeat; and every server of a cluster streams every server's
 * changes. One shared tail polls the log for all streams of this server.
 *
 * A message is `id: <seq>`, `event: <action>`, `data: <JSON>` where the JSON holds exactly the
 * audit event's public fields (which never carry a key or a secret value). Each stream opens
 * with an id-only message naming where it starts, so a client that reconnects before any
 * event still resumes without a gap; a `: keep-alive` comment goes out every heartbeat.
 *
 * Errors before the stream starts (auth, a bad query, a resume point past the end of the log)
 * are problem+json as on every route. Once streaming, the reply is hijacked: a failure ends
 * the stream and the client resumes from its last id. The token is checked again before every
 * event and heartbeat, so a stream ends once its token is revoked, disabled or expired (or
 * loses `events:read`) instead of outliving it; the reconnect then gets its 401.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import { EVENT_FAMILIES, EventsHeaders, EventsQuery, Problem, StreamEventSchema, type EventFamily, type EventsQueryWire } from '../../../contract/index.js';
import type { AuditTail, Subscription, TailEvent, TailFilter } from '../../../audit/index.js';
import { AppError } from '../../../shared/errors.js';
import type { RouteDeps } from '../../route-deps.js';
import { errorResponses } from '../responses.js';
import { checkAccess } from '../../plugins/auth.js';
import type { KeyService } from '../../../keys/index.js';

export const EVENTS_SCOPE = 'events:read';

/** A client that stops reading is cut off past this much unsent data; it resumes from the log. */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;
const MAX_SEQ = 2_147_483_647;

/** The streams of one server, over its one tail of the audit log. */
export interface EventStreams {
  readonly tail: AuditTail;
  readonly heartbeatMs: number;
  /** Registers a stream's end function; returns the function that forgets it. */
  track(end: () => void): () => void;
  /** How many streams are open. */
  readonly open: number;
  /** Ends every open stream and stops the tail (server shutdown, so `close()` does not wait on them). */
  close(): void;
}

export function createEventStreams(tail: AuditTail, heartbeatMs: number): EventStreams {
  const ends = new Set<() => void>();
  let closed = false;
  return {
    tail,
    heartbeatMs,
    track(end) {
      if (closed) {
        end();
        return () => undefined;
      }
      ends.add(end);
      return () => {
        ends.delete(end);
      };
    },
    get open() {
      return ends.size;
    },
    close() {
      closed = true;
      for (const end of [...ends]) end();
      ends.clear();
      tail.close();
    },
  };
}

/** `key,rotation` into families; every family when absent. */
export function parseFamilies(text: string | undefined): EventFamily[] {
  if (text === undefined) return [...EVENT_FAMILIES];
  const names = text.split(',').map((name) => name.trim());
  const unknown = names.filter((name) => !(EVENT_FAMILIES as readonly string[]).includes(name));
  if (unknown.length > 0 || names.length === 0) {
    const shown = unknown.map((name) => `"${name.replace(/[^\x20-\x7e]/g, '?').slice(0, 40)}"`).join(', ');
    throw new AppError('ERR_INVALID_REQUEST', `query parameter "types" names unknown event types ${shown}; use a comma-separated list of ${EVENT_FAMILIES.join(', ')}`, {
      details: [{ field: 'types', message: `must be a comma-separated list of ${EVENT_FAMILIES.join(', ')}` }],
    });
  }
  return [...new Set(names as EventFamily[])];
}

/** The sequence number in a `Last-Event-ID` header; undefined when absent or empty. */
export function parseLastEventId(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  const text = (Array.isArray(header) ? header[header.length - 1]! : header).trim();
  if (text === '') return undefined;
  if (!/^[0-9]{1,10}$/.test(text) || Number(text) > MAX_SEQ) {
    throw new AppError('ERR_INVALID_REQUEST', 'the Last-Event-ID header must be the id of an event this stream sent (a sequence number)', {
      details: [{ field: 'last-event-id', message: 'must be a whole number' }],
    });
  }
  return Number(text);
}

/**
 * Events of the families, about the target if one is given: an id (`key_…`, `sec_…`) matches
 * the event's target; a secret path matches events whose data names that path or one under it
 * (`payments` and `payments/` both match `payments/stripe/api-key`; `payments/*` too).
 */
export function eventFilter(families: readonly string[], target: string | undefined): TailFilter {
  const wanted = new Set(families);
  const familyOf = (action: string) => {
    const dot = action.indexOf('.');
    return dot === -1 ? action : action.slice(0, dot);
  };
  if (target === undefined) return (event) => wanted.has(familyOf(event.action));
  const path = target.endsWith('/*') ? target.slice(0, -2) : target.endsWith('/') ? target.slice(0, -1) : target;
  const under = `${path}/`;
  return (event) => {
    if (!wanted.has(familyOf(event.action))) return false;
    if (event.target === target) return true;
    const eventPath = event.data.path;
    return typeof eventPath === 'string' && path !== '' && (eventPath === path || eventPath.startsWith(under));
  };
}

/** One message: names and JSON carry no line breaks (JSON escapes them; actions are checked). */
export function formatMessage(event: TailEvent): string {
  const body = { seq: event.seq, time: event.time, action: event.action, target: event.target, actor: event.actor, data: event.data };
  return `id: ${event.seq}\nevent: ${event.action.replace(/[\r\n]/g, '')}\ndata: ${JSON.stringify(body)}\n\n`;
}

export function eventsRoute(app: FastifyInstance, deps: RouteDeps): void {
  app.get<{ Querystring: EventsQueryWire }>(
    '/v1/events',
    {
      // A HEAD would open a stream with no body to send.
      exposeHeadRoute: false,
      onRequest: deps.guard(EVENTS_SCOPE),
      schema: {
        tags: ['events'],
        summary: 'Stream key, secret, rotation, incident and KEK changes as server-sent events',
        description:
          'Each message is `id: <audit seq>`, `event: <action>`, `data: <JSON event>`. Resume with `Last-Event-ID` (or `since`): events after it are replayed from the audit log, then live ones follow, with no gap or repeat. Without either the stream starts now. A `: keep-alive` comment is sent every 15 s. Requires the scope `events:read`; the stream carries events for every key and secret path (no per-path narrowing).',
        querystring: EventsQuery,
        headers: EventsHeaders,
        response: {
          200: {
            description: 'A text/event-stream; each message data is a StreamEvent',
            content: { 'text/event-stream': { schema: StreamEventSchema } },
          },
          ...errorResponses(Problem),
        },
      },
    },
    async (request, reply) => {
      const families = parseFamilies(request.query.types);
      const after = parseLastEventId(request.headers['last-event-id']) ?? request.query.since;
      const filter = eventFilter(families, request.query.target);
      const { tail } = deps.events;
      if (after !== undefined) {
        const head = await tail.head();
        if (after > head) {
          throw new AppError('ERR_INVALID_REQUEST', `cannot resume after event ${after}: the audit log ends at ${head}`, {
            details: [{ field: 'since', message: `must be at most ${head}` }],
          });
        }
      }
      openStream(reply, deps.events, { families, filter, allowed: stillAllowed(deps.keys, request), ...(after !== undefined ? { after } : {}) });
    },
  );
}

/** Resolves once the client has read what was written. */
interface Drain {
  readonly drained: Promise<void>;
}

interface StreamOptions {
  readonly families: readonly string[];
  readonly filter: TailFilter;
  /** Whether the caller's token still grants the stream; a promise while its row loads. */
  readonly allowed: () => boolean | Promise<boolean>;
  readonly after?: number;
}

/** The route's access check, repeated: the same header and address the guard decided on. */
function stillAllowed(keys: KeyService, request: FastifyRequest): () => boolean | Promise<boolean> {
  const header = request.headers.authorization;
  const ip = request.ip;
  return () => {
    try {
      const decision = checkAccess(keys, header, ip, EVENTS_SCOPE);
      return decision instanceof Promise ? decision.then((settled) => settled.ok, () => false) : decision.ok;
    } catch {
      return false;
    }
  };
}

function openStream(reply: FastifyReply, streams: EventStreams, options: StreamOptions): void {
  reply.hijack();
  const res: ServerResponse = reply.raw;
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(reply.getHeaders())) if (typeof value === 'string') headers[name] = value;
  res.writeHead(200, {
    ...headers,
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    // A stream is never reused for another request: ending it closes the connection, so shutdown does not wait on idle sockets.
    connection: 'close',
    'x-accel-buffering': 'no',
  });
  res.flushHeaders();

  let ended = false;
  let subscription: Subscription | undefined;
  let untrack = (): void => undefined;
  // Messages go out in order even when an access check waits for the token's row to load. The
  // queue never waits for the client to read (a stalled client fills the socket and is cut
  // off); only the replay waits, so it reads the log no faster than the client takes it.
  let queue: Promise<unknown> = Promise.resolve();
  const enqueue = (text: string): Promise<Drain | undefined> => {
    const sent = queue.then(() => sendChecked(text));
    queue = sent;
    return sent;
  };
  const heartbeat = setInterval(() => void enqueue(': keep-alive\n\n'), streams.heartbeatMs);
  heartbeat.unref();
  const end = () => {
    if (ended) return;
    ended = true;
    clearInterval(heartbeat);
    subscription?.unsubscribe();
    untrack();
    if (!res.writableEnded) res.end();
  };
  res.on('close', end);
  untrack = streams.track(end);

  /** Writes; a Drain when the client has yet to take it all; cuts off a client that stopped reading. */
  function write(text: string): Drain | undefined {
    if (ended || res.write(text)) return undefined;
    if (res.writableLength > MAX_BUFFERED_BYTES) {
      end();
      return undefined;
    }
    return {
      drained: new Promise((resolve) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.on('drain', done);
        res.on('close', done);
      }),
    };
  }

  /** Writes once the token is known to still grant the stream; ends the stream otherwise. */
  function sendChecked(text: string): Drain | undefined | Promise<Drain | undefined> {
    if (ended) return undefined;
    const allowed = options.allowed();
    if (allowed === true) return write(text);
    if (allowed === false) return void end();
    return allowed.then((yes) => (yes ? write(text) : void end()));
  }

  const deliver = async (event: TailEvent): Promise<void> => {
    const drain = await enqueue(formatMessage(event));
    await drain?.drained;
  };

  streams.tail
    .catchUp({
      ...(options.after !== undefined ? { after: options.after } : {}),
      families: options.families,
      filter: options.filter,
      stopped: () => ended,
      onStart: (after) => void enqueue(`id: ${after}\n\n`),
      deliver,
    })
    .then(
      (live) => {
        if (ended) live.unsubscribe();
        else subscription = live;
      },
      (error: unknown) => {
        reply.log.warn({ err: error }, 'event stream replay failed');
        end();
      },
    );
}
