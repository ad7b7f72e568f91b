import { describe, expect, it } from 'vitest';
import type { StreamEventWire } from '../contract/index.js';
import { KeysmithApiError, KeysmithClient, KeysmithConnectionError } from './client.js';

const event = (seq: number, action = 'key.rotated'): StreamEventWire => ({ seq, time: '2026-11-01T00:00:00.000Z', action, target: 'key_x', actor: 'system', data: {} });
const message = (e: StreamEventWire) => `id: ${e.seq}\nevent: ${e.action}\ndata: ${JSON.stringify(e)}\n\n`;

/** A fetch that answers each call with the next scripted answer, recording the request headers. */
function scripted(answers: Array<(signal: AbortSignal) => Response | Promise<Response>>) {
  const calls: Array<{ url: string; headers: Record<string, string> }> = [];
  const fake = (async (input: URL | RequestInfo, init?: RequestInit) => {
    calls.push({ url: String(input), headers: { ...(init?.headers as Record<string, string>) } });
    const answer = answers.shift();
    if (!answer) throw new TypeError('fetch failed');
    return answer(init!.signal!);
  }) as typeof fetch;
  return { fake, calls };
}

const sse = (text: string) => () => new Response(text, { status: 200, headers: { 'content-type': 'text/event-stream' } });
/** A stream that sends `text` and then stays open until the request is aborted. */
const open = (text: string) => (signal: AbortSignal) =>
  new Response(
    new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(text));
        signal.addEventListener('abort', () => controller.error(new DOMException('aborted', 'AbortError')));
      },
    }),
    { status: 200 },
  );

describe('KeysmithClient.events', () => {
  it('yields parsed events, and resumes a dropped stream with the last id, so nothing repeats', async () => {
    const { fake, calls } = scripted([sse(`id: 4\n\n${message(event(5))}${message(event(6))}`), sse(`${message(event(7, 'key.revoked'))}`), open('')]);
    const client = new KeysmithClient({ addr: 'http://ks.test', token: 'tok', fetch: fake });
    const got: StreamEventWire[] = [];
    for await (const e of client.events({ types: ['key', 'rotation'], target: 'key_x', retryMs: 1 })) {
      got.push(e);
      if (got.length === 3) break;
    }
    expect(got.map((e) => [e.seq, e.action])).toEqual([
      [5, 'key.rotated'],
      [6, 'key.rotated'],
      [7, 'key.revoked'],
    ]);
    expect(calls[0]!.url).toBe('http://ks.test/v1/events?types=key%2Crotation&target=key_x');
    expect(calls[0]!.headers).toMatchObject({ accept: 'text/event-stream', authorization: 'Bearer tok' });
    expect(calls[0]!.headers['last-event-id']).toBeUndefined();
    expect(calls[1]!.headers['last-event-id']).toBe('6');
  });

  it('sends since as Last-Event-ID, and takes the id of a message without data as the resume point', async () => {
    const { fake, calls } = scripted([sse('id: 10\n\n'), open(message(event(11)))]);
    const client = new KeysmithClient({ addr: 'http://ks.test', fetch: fake });
    for await (const e of client.events({ since: 3, retryMs: 1 })) {
      expect(e.seq).toBe(11);
      break;
    }
    expect(calls.map((c) => c.headers['last-event-id'])).toEqual(['3', '10']);
  });

  it('throws the problem of a refused stream, and a connection error when the server cannot be reached at first', async () => {
    const refused = scripted([() => new Response(JSON.stringify({ status: 403, error: 'ERR_FORBIDDEN', code: 'forbidden', detail: 'this token lacks the scope "events:read"' }), { status: 403 })]);
    const iterate = async (client: KeysmithClient) => {
      for await (const _ of client.events()) void _;
    };
    const error = await iterate(new KeysmithClient({ addr: 'http://ks.test', fetch: refused.fake })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KeysmithApiError);
    expect(error).toMatchObject({ status: 403, error: 'ERR_FORBIDDEN' });
    await expect(iterate(new KeysmithClient({ addr: 'http://ks.test', fetch: scripted([]).fake }))).rejects.toBeInstanceOf(KeysmithConnectionError);
  });

  it('ends without an error when the signal aborts', async () => {
    const { fake } = scripted([open(message(event(1)))]);
    const abort = new AbortController();
    const got: number[] = [];
    for await (const e of new KeysmithClient({ addr: 'http://ks.test', fetch: fake }).events({ signal: abort.signal })) {
      got.push(e.seq);
      abort.abort();
    }
    expect(got).toEqual([1]);
  });

  it('stops at the end of the stream with reconnect off', async () => {
    const { fake, calls } = scripted([sse(message(event(1)))]);
    const got: number[] = [];
    for await (const e of new KeysmithClient({ addr: 'http://ks.test', fetch: fake }).events({ reconnect: false })) got.push(e.seq);
    expect(got).toEqual([1]);
    expect(calls).toHaveLength(1);
  });
});
