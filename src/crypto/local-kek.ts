/**
 * The `local` KEK provider: KEK version n is derived from the master key with HKDF
 * (`kek:v<n>`), so nothing but the master key has to be kept. Wrapping is AES-256-GCM.
 */
import { deriveSecret } from './master-key.js';
import { aeadOpen, aeadSeal } from './aead.js';
import type { KekProvider } from './kek-provider.js';
import type { RandomBytes } from '../shared/ids.js';

export function createLocalKekProvider(masterKey: Uint8Array, random: RandomBytes): KekProvider {
  const keys = new Map<number, Buffer>();
  const kekOf = (version: number): Buffer => {
    let key = keys.get(version);
    if (key === undefined) {
      key = deriveSecret(masterKey, `kek:v${version}`);
      keys.set(version, key);
    }
    return key;
  };
  return {
    id: 'local',
    ensureVersion: async () => undefined,
    wrapKey: async (dataKey, version, aad) => aeadSeal(kekOf(version), dataKey, aad, random),
    unwrapKey: async (wrapped, version, aad) => aeadOpen(kekOf(version), wrapped, aad),
    close: async () => keys.clear(),
  };
}
