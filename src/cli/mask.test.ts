import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { MASK, SecretMasker, maskSecrets, maskingTransform } from './mask.js';

/** Independent reference: mark every byte inside any occurrence, then write each marked run as ***. */
function reference(input: Buffer, values: readonly string[]): Buffer {
  const needles = values.filter((value) => [...value].length >= 4).map((value) => Buffer.from(value));
  const marked = new Array<boolean>(input.length).fill(false);
  for (const needle of needles) {
    for (let at = 0; at + needle.length <= input.length; at += 1) {
      if (input.subarray(at, at + needle.length).equals(needle)) for (let i = at; i < at + needle.length; i += 1) marked[i] = true;
    }
  }
  const out: number[] = [];
  for (let i = 0; i < input.length; i += 1) {
    if (!marked[i]) out.push(input[i]!);
    else if (i === 0 || !marked[i - 1]) out.push(...Buffer.from(MASK));
  }
  return Buffer.from(out);
}

/** Feeds `input` to a masker in the given chunk sizes (cycled) and joins what comes out. */
function streamed(input: Buffer, values: readonly string[], sizes: readonly number[]): Buffer {
  const masker = new SecretMasker(values);
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < input.length; i += 1) {
    const size = Math.max(1, sizes[i % sizes.length]!);
    out.push(masker.push(input.subarray(at, at + size)));
    at += size;
  }
  out.push(masker.end());
  return Buffer.concat(out);
}

const text = (buffer: Buffer) => buffer.toString('utf8');

describe('maskSecrets', () => {
  it('replaces every occurrence of a value with ***', () => {
    expect(text(maskSecrets(Buffer.from('token=hunter22 and again hunter22\n'), ['hunter22']))).toBe('token=*** and again ***\n');
  });

  it('masks several different values', () => {
    const out = text(maskSecrets(Buffer.from('user=alice pass=s3cr3t-pw key=AKIAXYZ\n'), ['s3cr3t-pw', 'AKIAXYZ']));
    expect(out).toBe('user=alice pass=*** key=***\n');
  });

  it('hides overlapping values whole, so no part of either shows', () => {
    expect(text(maskSecrets(Buffer.from('[abcdef]'), ['abcd', 'cdef']))).toBe('[***]');
    // One value inside another.
    expect(text(maskSecrets(Buffer.from('x password123 y password z'), ['password123', 'password']))).toBe('x *** y *** z');
    // A value overlapping itself.
    expect(text(maskSecrets(Buffer.from('aaaaaa|aaaa'), ['aaaa']))).toBe('***|***');
  });

  it('writes touching occurrences as one ***', () => {
    expect(text(maskSecrets(Buffer.from('s3cr3ts3cr3t!'), ['s3cr3t']))).toBe('***!');
  });

  it('leaves values shorter than 4 characters alone', () => {
    expect(text(maskSecrets(Buffer.from('abc abcd'), ['abc', 'abcd']))).toBe('abc ***');
    expect(text(maskSecrets(Buffer.from('a b'), ['a', '']))).toBe('a b');
  });

  it('counts characters, not bytes, for the minimum length', () => {
    expect(text(maskSecrets(Buffer.from('key: 日本語 / 日本語字'), ['日本語', '日本語字']))).toBe('key: 日本語 / ***');
  });

  it('passes everything through when there is nothing to mask', () => {
    const input = Buffer.from([0, 1, 2, 255, 254, 10]);
    expect(maskSecrets(input, []).equals(input)).toBe(true);
    expect(maskSecrets(Buffer.alloc(0), ['secret-value']).length).toBe(0);
  });

  it('is binary-safe: finds values among bytes that are not UTF-8 and keeps those bytes intact', () => {
    const input = Buffer.concat([Buffer.from([0xff, 0x00, 0xc3]), Buffer.from('p4ssw0rd'), Buffer.from([0x00, 0xfe, 0x80])]);
    expect(maskSecrets(input, ['p4ssw0rd']).equals(Buffer.concat([Buffer.from([0xff, 0x00, 0xc3]), Buffer.from(MASK), Buffer.from([0x00, 0xfe, 0x80])]))).toBe(true);
  });

  it('masks values with newlines and multibyte characters', () => {
    expect(text(maskSecrets(Buffer.from('-----BEGIN\nline2\n-----END\n'), ['BEGIN\nline2']))).toBe('-----***\n-----END\n');
    expect(text(maskSecrets(Buffer.from('mot de passe: été-2024!'), ['été-2024']))).toBe('mot de passe: ***!');
  });
});

describe('SecretMasker across chunks', () => {
  it('masks a value split across two chunks', () => {
    expect(text(streamed(Buffer.from('before hunter22 after'), ['hunter22'], [10]))).toBe('before *** after');
  });

  it('masks a value split into single bytes', () => {
    expect(text(streamed(Buffer.from('x=hunter22;'), ['hunter22'], [1]))).toBe('x=***;');
  });

  it('masks a multibyte value split in the middle of a character', () => {
    const input = Buffer.from('[été-2024]');
    expect(text(streamed(input, ['été-2024'], [2, 1]))).toBe('[***]');
  });

  it('holds back only bytes that could begin a value, and only until they are decided', () => {
    const masker = new SecretMasker(['hunter22']);
    expect(text(masker.push(Buffer.from('Password: ')))).toBe('Password: ');
    expect(text(masker.push(Buffer.from('hun')))).toBe('');
    expect(text(masker.push(Buffer.from('gry\n')))).toBe('hungry\n');
    expect(text(masker.push(Buffer.from('hunter2')))).toBe('');
    expect(text(masker.end())).toBe('hunter2');
  });

  it('does not write a second *** when an overlapping value completes in a later chunk', () => {
    const masker = new SecretMasker(['abcd', 'cdefgh']);
    const out = Buffer.concat([masker.push(Buffer.from('[abcd')), masker.push(Buffer.from('ef')), masker.push(Buffer.from('gh]')), masker.end()]);
    expect(text(out)).toBe('[***]');
  });

  it('keeps a run covered by a long value masked across chunks', () => {
    const masker = new SecretMasker(['0123456789', '6789abcd']);
    const out = Buffer.concat([masker.push(Buffer.from('<0123456789')), masker.push(Buffer.from('abcd>')), masker.end()]);
    expect(text(out)).toBe('<***>');
  });

  it('gives the same output as the whole-buffer reference for every split of many inputs', () => {
    const values = ['abab', 'babx', 'hunter22', 'xx\nyy', 'ééé-ü', 'aaaa'];
    const alphabet = ['a', 'b', 'x', 'hunter2', '2', '\n', 'y', 'é', 'ü', '-', 'z', '\u0000'];
    let seed = 12345;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let round = 0; round < 300; round += 1) {
      const parts: string[] = [];
      for (let i = 0, n = 1 + random(30); i < n; i += 1) parts.push(random(4) === 0 ? values[random(values.length)]! : alphabet[random(alphabet.length)]!);
      const input = Buffer.from(parts.join(''));
      const expected = reference(input, values);
      expect(maskSecrets(input, values).equals(expected)).toBe(true);
      for (const sizes of [[1], [2], [3], [7], [1, 5, 2], [random(9) + 1, random(9) + 1]]) {
        const got = streamed(input, values, sizes);
        if (!got.equals(expected)) {
          throw new Error(`split ${JSON.stringify(sizes)} of ${JSON.stringify(input.toString())}: got ${JSON.stringify(got.toString())}, want ${JSON.stringify(expected.toString())}`);
        }
      }
    }
  });
});

describe('maskingTransform', () => {
  async function through(chunks: ReadonlyArray<string | Buffer>, values: readonly string[]): Promise<Buffer> {
    const out: Buffer[] = [];
    await pipeline(
      Readable.from(chunks.map((chunk) => Buffer.from(chunk))),
      maskingTransform(values),
      new Writable({
        write(chunk: Buffer, _encoding, callback) {
          out.push(chunk);
          callback();
        },
      }),
    );
    return Buffer.concat(out);
  }

  it('masks a stream and flushes what it held back when the stream ends', async () => {
    expect(text(await through(['the key is sk_li', 've_abc and it ends sk_li'], ['sk_live_abc']))).toBe('the key is *** and it ends sk_li');
  });

  it('writes nothing for an empty stream', async () => {
    expect((await through([], ['secret-value'])).length).toBe(0);
  });

  it('ends a stream that ends inside a value with the value in clear, since it never appeared whole', async () => {
    expect(text(await through(['secret-val'], ['secret-value']))).toBe('secret-val');
  });
});
