/**
 * Envelope encryption: each value is sealed with its own random data key, and the data key is
 * wrapped by a KEK version. The envelope records its format, algorithm and KEK so both can
 * change later. Re-wrapping changes only the wrapped key, never the sealed value.
 */
import { AEAD_KEY_BYTES, aeadOpen, aeadSeal, decryptionFailed } from './aead.js';
import type { KekProvider } from './kek-provider.js';
import type { RandomBytes } from '../shared/ids.js';

export const ENVELOPE_FORMAT = 1;
export const ENVELOPE_ALG = 'A256GCM';

export interface Envelope {
  readonly format: number;
  readonly alg: string;
  readonly kekId: string;
  readonly kekVersion: number;
  /** The wrapped data key. */
  readonly wrappedKey: Buffer;
  /** nonce ‖ ciphertext ‖ tag of the value under the data key. */
  readonly sealed: Buffer;
}

export async function sealEnvelope(
  kek: KekProvider,
  kekVersion: number,
  plaintext: Uint8Array,
  aad: Uint8Array,
  random: RandomBytes,
): Promise<Envelope> {
  const dataKey = random(AEAD_KEY_BYTES);
  try {
    const sealed = aeadSeal(dataKey, plaintext, aad, random);
    const wrappedKey = await kek.wrapKey(dataKey, kekVersion, aad);
    return { format: ENVELOPE_FORMAT, alg: ENVELOPE_ALG, kekId: kek.id, kekVersion, wrappedKey, sealed };
  } finally {
    dataKey.fill(0);
  }
}

export async function openEnvelope(kek: KekProvider, envelope: Envelope, aad: Uint8Array): Promise<Buffer> {
  assertReadable(kek, envelope);
  const dataKey = await kek.unwrapKey(envelope.wrappedKey, envelope.kekVersion, aad);
  try {
    return aeadOpen(dataKey, envelope.sealed, aad);
  } finally {
    dataKey.fill(0);
  }
}

/** Unwraps the data key and wraps it under another KEK version; the value stays sealed. */
export async function rewrapEnvelope(
  kek: KekProvider,
  envelope: Envelope,
  toVersion: number,
  aad: Uint8Array,
): Promise<Envelope> {
  assertReadable(kek, envelope);
  const dataKey = await kek.unwrapKey(envelope.wrappedKey, envelope.kekVersion, aad);
  try {
    const wrappedKey = await kek.wrapKey(dataKey, toVersion, aad);
    return { ...envelope, kekVersion: toVersion, wrappedKey };
  } finally {
    dataKey.fill(0);
  }
}

function assertReadable(kek: KekProvider, envelope: Envelope): void {
  if (envelope.format !== ENVELOPE_FORMAT || envelope.alg !== ENVELOPE_ALG || envelope.kekId !== kek.id) {
    throw decryptionFailed();
  }
}
