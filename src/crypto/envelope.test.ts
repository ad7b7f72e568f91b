import { describe, expect, it } from 'vitest';
import { AppError } from '../shared/errors.js';
import type { KekProvider } from './kek-provider.js';
import { createLocalKekProvider } from './local-kek.js';
import { ENVELOPE_ALG, ENVELOPE_FORMAT, openEnvelope, rewrapEnvelope, sealEnvelope, type Envelope } from './envelope.js';

function countingRandom(seed = 0): (size: number) => Buffer {
  let next = seed;
  return (size) => Buffer.from(Array.from({ length: size }, () => next++ & 0xff));
}

const MASTER_KEY = Buffer.alloc(32, 0x5a);
const value = Buffer.from('postgres://app:hunter2@db/app');
const aad = Buffer.from('sec_payments/v3');

function localKek(masterKey: Buffer = MASTER_KEY, random = countingRandom(1000)): KekProvider {
  return createLocalKekProvider(masterKey, random);
}

async function expectDecryptionFailed(promise: Promise<unknown>): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AppError);
  expect((error as AppError).code).toBe('ERR_DECRYPTION_FAILED');
  expect((error as AppError).message).toBe('decryption failed');
}

function flip(bytes: Buffer, at: number): Buffer {
  const copy = Buffer.from(bytes);
  copy[at]! ^= 0x01;
  return copy;
}

describe('envelope encryption with the local KEK provider', () => {
  it('opens what it sealed, and records format, algorithm and KEK', async () => {
    const kek = localKek();
    const envelope = await sealEnvelope(kek, 1, value, aad, countingRandom());
    expect(envelope).toMatchObject({ format: ENVELOPE_FORMAT, alg: ENVELOPE_ALG, kekId: 'local', kekVersion: 1 });
    expect(envelope.sealed.includes(value)).toBe(false);
    expect(await openEnvelope(kek, envelope, aad)).toEqual(value);
  });

  it('opens after a restart: a new provider over the same master key reads old envelopes', async () => {
    const envelope = await sealEnvelope(localKek(), 2, value, aad, countingRandom());
    expect(await openEnvelope(localKek(Buffer.from(MASTER_KEY)), envelope, aad)).toEqual(value);
  });

  it('fails with only "decryption failed" under another AAD (another secret or version)', async () => {
    const kek = localKek();
    const envelope = await sealEnvelope(kek, 1, value, aad, countingRandom());
    await expectDecryptionFailed(openEnvelope(kek, envelope, Buffer.from('sec_other/v3')));
    await expectDecryptionFailed(openEnvelope(kek, envelope, Buffer.from('sec_payments/v4')));
  });

  it('binds the wrapped key to its AAD: unwrapping it for another secret fails', async () => {
    const kek = localKek();
    const wrapped = await kek.wrapKey(Buffer.alloc(32, 7), 1, aad);
    expect(await kek.unwrapKey(wrapped, 1, aad)).toEqual(Buffer.alloc(32, 7));
    await expectDecryptionFailed(kek.unwrapKey(wrapped, 1, Buffer.from('sec_other/v3')));
  });

  it('fails when a wrapped key is copied onto another row', async () => {
    const kek = localKek();
    const random = countingRandom();
    const mine = await sealEnvelope(kek, 1, value, aad, random);
    const theirs = await sealEnvelope(kek, 1, Buffer.from('other'), Buffer.from('sec_other/v1'), random);
    await expectDecryptionFailed(openEnvelope(kek, { ...mine, wrappedKey: theirs.wrappedKey }, aad));
  });

  it('fails when a byte of the sealed value or of the wrapped key is changed', async () => {
    const kek = localKek();
    const envelope = await sealEnvelope(kek, 1, value, aad, countingRandom());
    for (const at of [0, 20, envelope.sealed.length - 1]) {
      await expectDecryptionFailed(openEnvelope(kek, { ...envelope, sealed: flip(envelope.sealed, at) }, aad));
    }
    for (const at of [0, 20, envelope.wrappedKey.length - 1]) {
      await expectDecryptionFailed(openEnvelope(kek, { ...envelope, wrappedKey: flip(envelope.wrappedKey, at) }, aad));
    }
  });

  it('refuses an envelope for another KEK, format or algorithm', async () => {
    const kek = localKek();
    const envelope = await sealEnvelope(kek, 1, value, aad, countingRandom());
    const variants: Envelope[] = [
      { ...envelope, kekId: 'pkcs11:prod-hsm' },
      { ...envelope, format: ENVELOPE_FORMAT + 1 },
      { ...envelope, alg: 'A128GCM' },
    ];
    for (const variant of variants) {
      await expectDecryptionFailed(openEnvelope(kek, variant, aad));
      await expectDecryptionFailed(rewrapEnvelope(kek, variant, 2, aad));
    }
  });

  it('fails under another master key or another KEK version', async () => {
    const envelope = await sealEnvelope(localKek(), 1, value, aad, countingRandom());
    await expectDecryptionFailed(openEnvelope(localKek(Buffer.alloc(32, 0x5b)), envelope, aad));
    await expectDecryptionFailed(openEnvelope(localKek(), { ...envelope, kekVersion: 2 }, aad));
  });

  it('re-wraps to a new KEK version without touching the sealed value', async () => {
    const kek = localKek();
    const envelope = await sealEnvelope(kek, 1, value, aad, countingRandom());
    const moved = await rewrapEnvelope(kek, envelope, 2, aad);
    expect(moved.kekVersion).toBe(2);
    expect(moved.sealed.equals(envelope.sealed)).toBe(true);
    expect(moved.wrappedKey.equals(envelope.wrappedKey)).toBe(false);
    expect(moved).toMatchObject({ format: envelope.format, alg: envelope.alg, kekId: envelope.kekId });
    expect(await openEnvelope(kek, moved, aad)).toEqual(value);
    // The old version's wrapped key is no good under the new version.
    await expectDecryptionFailed(openEnvelope(kek, { ...moved, wrappedKey: envelope.wrappedKey }, aad));
    await expectDecryptionFailed(openEnvelope(kek, { ...envelope, kekVersion: 2 }, aad));
  });

  it('refuses to re-wrap under a different AAD', async () => {
    const kek = localKek();
    const envelope = await sealEnvelope(kek, 1, value, aad, countingRandom());
    await expectDecryptionFailed(rewrapEnvelope(kek, envelope, 2, Buffer.from('sec_other/v3')));
  });

  it('gives different wrapped keys under different KEK versions, all else equal', async () => {
    const dataKey = Buffer.alloc(32, 9);
    const v1 = await localKek(MASTER_KEY, countingRandom(5)).wrapKey(dataKey, 1, aad);
    const v2 = await localKek(MASTER_KEY, countingRandom(5)).wrapKey(dataKey, 2, aad);
    expect(v1.subarray(0, 12)).toEqual(v2.subarray(0, 12));
    expect(v1.equals(v2)).toBe(false);
    const again = await localKek(MASTER_KEY, countingRandom(5)).wrapKey(dataKey, 1, aad);
    expect(again).toEqual(v1);
  });
});
