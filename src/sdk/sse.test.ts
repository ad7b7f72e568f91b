import { describe, expect, it } from 'vitest';
import { SseParser } from './sse.js';

describe('SseParser', () => {
  it('yields a message at each blank line, with its event name, data and id', () => {
    const parser = new SseParser();
    const messages = parser.push('id: 7\nevent: key.rotated\ndata: {"seq":7}\n\n: keep-alive\n\ndata: a\ndata: b\n\n');
    expect(messages).toEqual([
      { event: 'key.rotated', data: '{"seq":7}', id: '7', dispatch: true },
      { event: 'message', data: 'a\nb', id: '7', dispatch: true },
    ]);
    expect(parser.lastId).toBe('7');
  });

  it('puts messages together across chunks split anywhere, CRLF and CR line ends included', () => {
    const text = '\ufeffid: 1\r\nevent: x\r\ndata: {"a":1}\r\n\r\nid: 2\rdata: two\r\r\n';
    const whole = new SseParser().push(text);
    for (let size = 1; size < 7; size++) {
      const parser = new SseParser();
      const messages = [];
      for (let i = 0; i < text.length; i += size) messages.push(...parser.push(text.slice(i, i + size)));
      expect(messages, `chunks of ${size}`).toEqual(whole);
    }
    expect(whole.map((m) => [m.id, m.event, m.data])).toEqual([
      ['1', 'x', '{"a":1}'],
      ['2', 'message', 'two'],
    ]);
  });

  it('moves the id on a message without data but does not dispatch it; ignores comments and reads retry', () => {
    const parser = new SseParser('3');
    expect(parser.push(': hello\n\nretry: 2500\n\nid: 12\n\n')).toEqual([{ event: 'message', data: '', id: '12', dispatch: false }]);
    expect(parser.retryMs).toBe(2500);
    expect(parser.lastId).toBe('12');
  });
});
