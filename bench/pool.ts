/**
 * The request pool for the verify benchmark (80% valid, 10% revoked, 10% malformed, in a
 * fixed shuffled order) and the correctness check that posts a sample of it.
 */
import type { SeedResult, SeededKey } from './seed.js';

export type Expected = 'VALID' | 'REVOKED' | 'MALFORMED';

export interface PoolEntry {
  readonly body: string;
  readonly expected: Expected;
}

export interface PoolMix {
  readonly bodies: number;
  readonly valid: number;
  readonly revoked: number;
  readonly malformed: number;
  readonly distinctValidKeys: number;
  readonly distinctRevokedKeys: number;
}

/** mulberry32: a small seeded PRNG so every run uses the same mix and order. */
export function prng(seedValue: number): () => number {
  let a = seedValue >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** Five kinds of text that `parseKey` refuses, so the server answers MALFORMED. */
export function malformedKey(kind: number, sample: string, random: () => number): string {
  const base62 = (length: number) => Array.from({ length }, () => BASE62[Math.floor(random() * 62)]).join('');
  switch (kind % 5) {
    case 0: {
      // Right shape, wrong checksum: the last checksum character changed.
      const last = sample[sample.length - 1]!;
      const other = BASE62[(BASE62.indexOf(last) + 1 + Math.floor(random() * 60)) % 62]!;
      return sample.slice(0, -1) + other;
    }
    case 1:
      // One secret character changed (index 40 is inside the secret): the checksum no longer matches.
      return sample.slice(0, 40) + (sample[40] === 'A' ? 'B' : 'A') + sample.slice(41);
    case 2:
      return `ks_live_${base62(22)}_${base62(20)}`; // truncated
    case 3:
      return `ks_prod_${base62(22)}_${base62(49)}`; // unknown env
    default:
      return `${base62(8)}-${base62(24)}`; // garbage
  }
}

/** 80% valid (from `poolSize` distinct keys), 10% revoked, 10% malformed, shuffled. */
export function buildPool(seeded: SeedResult, poolSize: number): { entries: PoolEntry[]; mix: PoolMix } {
  const random = prng(0x5eed);
  const validKeys = pickDistinct(seeded.valid, Math.min(poolSize, seeded.valid.length), random);
  const tenth = Math.max(1, Math.round(validKeys.length / 8));
  const entries: PoolEntry[] = validKeys.map((k) => ({ body: JSON.stringify({ key: k.key }), expected: 'VALID' }));
  for (let i = 0; i < tenth; i++) {
    entries.push({ body: JSON.stringify({ key: seeded.revoked[i % seeded.revoked.length]!.key }), expected: 'REVOKED' });
  }
  for (let i = 0; i < tenth; i++) {
    const sample = validKeys[Math.floor(random() * validKeys.length)]!.key;
    entries.push({ body: JSON.stringify({ key: malformedKey(i, sample, random) }), expected: 'MALFORMED' });
  }
  for (let i = entries.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [entries[i], entries[j]] = [entries[j]!, entries[i]!];
  }
  return {
    entries,
    mix: {
      bodies: entries.length,
      valid: validKeys.length,
      revoked: tenth,
      malformed: tenth,
      distinctValidKeys: validKeys.length,
      distinctRevokedKeys: Math.min(tenth, seeded.revoked.length),
    },
  };
}

function pickDistinct(from: readonly SeededKey[], count: number, random: () => number): SeededKey[] {
  const copy = [...from];
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(random() * (copy.length - i));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy.slice(0, count);
}

export async function postJson(url: string, body: unknown, headers: Record<string, string>): Promise<{ status: number; json: unknown }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    // keep the text
  }
  return { status: response.status, json };
}

export class WrongAnswerError extends Error {}

/**
 * Posts up to `perKind` entries of each kind and checks each answer: 200 with
 * `{"valid":true,"code":"VALID"}`, `{"valid":false,"code":"REVOKED"}` or `…"MALFORMED"}`.
 */
export async function checkAnswers(url: string, headers: Record<string, string>, pool: readonly PoolEntry[], perKind: number, when: string): Promise<number> {
  const byKind = new Map<Expected, PoolEntry[]>();
  for (const entry of pool) {
    const list = byKind.get(entry.expected) ?? [];
    if (list.length < perKind) list.push(entry);
    byKind.set(entry.expected, list);
  }
  for (const kind of ['VALID', 'REVOKED', 'MALFORMED'] as const) {
    if (!byKind.get(kind)?.length) throw new WrongAnswerError(`the request pool has no ${kind} entries`);
  }
  const queue = [...byKind.values()].flat();
  let checked = 0;
  const worker = async () => {
    for (let entry = queue.shift(); entry; entry = queue.shift()) {
      const { status, json } = await postJson(url, entry.body, headers);
      const answer = json as { valid?: unknown; code?: unknown };
      if (status !== 200 || answer.code !== entry.expected || answer.valid !== (entry.expected === 'VALID')) {
        throw new WrongAnswerError(
          `${when}: a ${entry.expected} key was answered ${status} ${JSON.stringify(json).slice(0, 300)}; ` +
            `expected 200 {"valid":${entry.expected === 'VALID'},"code":"${entry.expected}"}`,
        );
      }
      checked += 1;
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return checked;
}

/**
 * Sends every body in the pool once (a few at a time), so the measured seconds see a server in
 * steady state: for Keysmith, every key's row is in its cache, as on a gateway that has been
 * up for a while. The baseline gets the same pass, so both targets are treated alike.
 */
export async function primeAll(url: string, headers: Record<string, string>, pool: readonly PoolEntry[], concurrency = 16): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < pool.length) {
      const entry = pool[next++]!;
      const answer = await fetch(url, { method: 'POST', headers, body: entry.body });
      await answer.arrayBuffer();
      if (answer.status !== 200) throw new WrongAnswerError(`priming answered ${answer.status}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}
