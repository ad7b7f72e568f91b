/**
 * Masks secret values in a byte stream (the output of a child of `keysmith run`): every
 * occurrence of any value becomes `***`. Overlapping or touching occurrences are hidden as one
 * `***`, so no part of any value shows. Bytes, not text: a value split across chunks, or inside
 * output that is not UTF-8, is still found.
 *
 * Only the bytes that could begin a value still to come are held back (fewer than the longest
 * value), so a prompt without a newline reaches the terminal at once unless it ends in the first
 * bytes of a secret.
 */
import { Transform, type TransformCallback } from 'node:stream';

/** Shorter values are not masked: `***` in place of every `abc` would wreck output and hide nothing. */
export const MIN_MASKED_LENGTH = 4;
export const MASK = '***';
const MASK_BYTES = Buffer.from(MASK);

export class SecretMasker {
  readonly #needles: readonly Buffer[];
  /** Received bytes not yet written: the start of a possible occurrence. */
  #pending: Buffer = Buffer.alloc(0);
  /** How many leading bytes of #pending an occurrence already written as `***` covers. */
  #covered = 0;
  /** Whether the last thing written was `***`, so a touching occurrence is not masked twice. */
  #inMask = false;

  constructor(values: Iterable<string>) {
    const unique = new Set<string>();
    for (const value of values) if ([...value].length >= MIN_MASKED_LENGTH) unique.add(value);
    this.#needles = [...unique].map((value) => Buffer.from(value, 'utf8'));
  }

  /** The masked bytes that can be written now. */
  push(chunk: Uint8Array): Buffer {
    if (this.#needles.length === 0) return Buffer.from(chunk);
    return this.#scan(this.#pending.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.#pending, chunk]), false);
  }

  /** Everything still held back, masked; the stream has ended. */
  end(): Buffer {
    if (this.#needles.length === 0) return Buffer.alloc(0);
    return this.#scan(this.#pending, true);
  }

  #scan(buffer: Buffer, final: boolean): Buffer {
    // Bytes from `decided` on may begin an occurrence that the next chunk completes.
    const decided = final ? buffer.length : this.#firstPartialStart(buffer);
    const intervals: Array<[number, number]> = [];
    if (this.#covered > 0) intervals.push([0, this.#covered]);
    for (const needle of this.#needles) {
      for (let at = buffer.indexOf(needle); at !== -1 && at < decided; at = buffer.indexOf(needle, at + 1)) {
        intervals.push([at, at + needle.length]);
      }
    }
    intervals.sort((a, b) => a[0] - b[0]);

    const out: Buffer[] = [];
    let position = 0; // bytes before this are written, in clear or as part of a mask
    let runEnd = -1; // end of the masked run being built; -1 before the first
    for (const [start, end] of intervals) {
      if (runEnd >= 0 && start <= runEnd) {
        // Overlapping or touching: one run, one `***`.
        runEnd = Math.max(runEnd, end);
        continue;
      }
      if (runEnd >= 0) position = runEnd;
      if (start > position) {
        out.push(buffer.subarray(position, start));
        this.#inMask = false;
      }
      // A run touching one written by the previous chunk continues it.
      if (!this.#inMask) out.push(MASK_BYTES);
      this.#inMask = true;
      runEnd = end;
    }
    if (runEnd >= 0) position = runEnd;
    if (decided > position) {
      out.push(buffer.subarray(position, decided));
      this.#inMask = false;
    }
    this.#covered = Math.max(0, runEnd - decided);
    this.#pending = Buffer.from(buffer.subarray(decided));
    return out.length === 1 ? Buffer.from(out[0]!) : Buffer.concat(out);
  }

  /** The first position whose remaining bytes are a proper prefix of some value; the length if none. */
  #firstPartialStart(buffer: Buffer): number {
    const longest = Math.max(...this.#needles.map((needle) => needle.length));
    for (let at = Math.max(0, buffer.length - longest + 1); at < buffer.length; at += 1) {
      const rest = buffer.length - at;
      for (const needle of this.#needles) {
        if (needle.length > rest && needle[0] === buffer[at] && needle.compare(buffer, at, buffer.length, 0, rest) === 0) return at;
      }
    }
    return buffer.length;
  }
}

/** Masks `values` in everything written through it (see SecretMasker). */
export function maskingTransform(values: Iterable<string>): Transform {
  const masker = new SecretMasker(values);
  return new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      const out = masker.push(chunk);
      callback(null, out.length > 0 ? out : undefined);
    },
    flush(callback: TransformCallback) {
      const out = masker.end();
      callback(null, out.length > 0 ? out : undefined);
    },
  });
}

/** One-shot form, for tests and short strings. */
export function maskSecrets(text: Uint8Array, values: Iterable<string>): Buffer {
  const masker = new SecretMasker(values);
  return Buffer.concat([masker.push(text), masker.end()]);
}
