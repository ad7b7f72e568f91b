/**
 * A server-sent events parser, as the HTML standard defines the format (§9.2.6): fed text in
 * chunks of any size, it yields each message once its blank line arrives. No dependency and
 * no I/O, so the client's reconnect logic can be tested apart from it.
 */

export interface SseMessage {
  /** `message` unless an `event:` field named it. */
  readonly event: string;
  readonly data: string;
  /** The last event id after this message (ids persist across messages, as EventSource keeps them). */
  readonly id: string | undefined;
  /** Whether the message had data: a message without (an id alone) is not an event, but moves the id. */
  readonly dispatch: boolean;
}

export class SseParser {
  #buffer = '';
  #data: string[] = [];
  #event = '';
  #id: string | undefined;
  #sawField = false;
  #first = true;
  /** The `retry:` the server asked for, in milliseconds. */
  retryMs: number | undefined;

  constructor(lastId?: string) {
    this.#id = lastId;
  }

  get lastId(): string | undefined {
    return this.#id;
  }

  /** Feeds decoded text; returns the messages it completed. */
  push(text: string): SseMessage[] {
    let input = this.#buffer + text;
    if (this.#first && input.length > 0) {
      this.#first = false;
      if (input.charCodeAt(0) === 0xfeff) input = input.slice(1);
    }
    const out: SseMessage[] = [];
    let start = 0;
    for (let i = 0; i < input.length; i++) {
      const c = input.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      // A CR at the very end may be the first half of a CRLF: wait for the next chunk.
      if (c === 13 && i === input.length - 1) break;
      this.#line(input.slice(start, i), out);
      if (c === 13 && input.charCodeAt(i + 1) === 10) i += 1;
      start = i + 1;
    }
    this.#buffer = input.slice(start);
    return out;
  }

  #line(line: string, out: SseMessage[]): void {
    if (line === '') {
      if (this.#sawField) {
        const data = this.#data.join('\n');
        out.push({ event: this.#event || 'message', data, id: this.#id, dispatch: this.#data.length > 0 });
      }
      this.#data = [];
      this.#event = '';
      this.#sawField = false;
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'data':
        this.#data.push(value);
        break;
      case 'event':
        this.#event = value;
        break;
      case 'id':
        if (!value.includes('\0')) this.#id = value;
        break;
      case 'retry':
        if (/^[0-9]+$/.test(value)) this.retryMs = Number(value);
        return;
      default:
        return;
    }
    this.#sawField = true;
  }
}
