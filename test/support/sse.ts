/**
 * A plain node HTTP client for `GET /v1/events`: reads the stream as it arrives and parses it
 * with the SDK's SSE parser, for tests over a real listening socket.
 */
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { expect } from 'vitest';
import type { StreamEventWire } from '../../src/contract/index.js';
import { SseParser, type SseMessage } from '../../src/sdk/index.js';

export interface OpenStream {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /** Every message so far, id-only ones included. */
  readonly messages: SseMessage[];
  /** Everything received, comments included. */
  text(): string;
  /** The events so far, parsed from `data:`. */
  events(): StreamEventWire[];
  /** Resolves once `check` holds (polled as data arrives), failing after `ms`. */
  until(check: () => boolean, ms?: number): Promise<void>;
  /** Resolves when the server ends the response. */
  readonly ended: Promise<void>;
  close(): void;
}

export function openStream(base: string, path: string, headers: Record<string, string> = {}): Promise<OpenStream> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, { headers: { accept: 'text/event-stream', ...headers } }, (res: IncomingMessage) => {
      const parser = new SseParser();
      const messages: SseMessage[] = [];
      let text = '';
      const waiters = new Set<() => void>();
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        messages.push(...parser.push(chunk));
        for (const waiter of [...waiters]) waiter();
      });
      const ended = new Promise<void>((done) => {
        res.on('end', done);
        res.on('close', done);
      });
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        messages,
        text: () => text,
        events: () => messages.filter((m) => m.dispatch).map((m) => JSON.parse(m.data) as StreamEventWire),
        until(check, ms = 10_000) {
          if (check()) return Promise.resolve();
          return new Promise((done, fail) => {
            const timer = setTimeout(() => {
              waiters.delete(waiter);
              fail(new Error(`stream condition not met within ${ms} ms; received:\n${text}`));
            }, ms);
            const waiter = () => {
              if (!check()) return;
              clearTimeout(timer);
              waiters.delete(waiter);
              done();
            };
            waiters.add(waiter);
          });
        },
        ended,
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** Opens a stream and waits for its opening id message: from then on every change reaches it. */
export async function follow(base: string, path: string, headers: Record<string, string> = {}): Promise<OpenStream> {
  const stream = await openStream(base, path, headers);
  expect(stream.status, stream.text()).toBe(200);
  await stream.until(() => stream.messages.length > 0);
  return stream;
}

