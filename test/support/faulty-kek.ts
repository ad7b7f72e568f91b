/**
 * A KEK provider for fault tests: the real provider it wraps does the work, and the test can
 * make the Nth wrap or unwrap from now fail once (as an HSM that stops answering does), or hold
 * it until the test lets go (so a test can act while the re-wrap is provably mid-batch).
 */
import type { KekProvider } from '../../src/crypto/index.js';
import { AppError } from '../../src/shared/errors.js';

export type KekMethod = 'wrapKey' | 'unwrapKey';

export interface FaultyKekProvider extends KekProvider {
  /** The nth call of `method` from now throws ERR_KEK_UNAVAILABLE; later calls work. */
  failOn(method: KekMethod, n: number): void;
  /** The nth call of `method` from now waits for `release()`; `reached` resolves when it starts waiting. */
  holdOn(method: KekMethod, n: number): { readonly reached: Promise<void>; release(): void };
}

interface Trap {
  readonly method: KekMethod;
  left: number;
  readonly spring: () => Promise<void>;
}

export function faultyKekProvider(inner: KekProvider): FaultyKekProvider {
  const traps: Trap[] = [];
  const trip = async (method: KekMethod): Promise<void> => {
    for (const trap of [...traps]) {
      if (trap.method !== method) continue;
      trap.left -= 1;
      if (trap.left > 0) continue;
      traps.splice(traps.indexOf(trap), 1);
      await trap.spring();
    }
  };
  return {
    id: inner.id,
    ensureVersion: (version) => inner.ensureVersion(version),
    async wrapKey(dataKey, version, aad) {
      await trip('wrapKey');
      return inner.wrapKey(dataKey, version, aad);
    },
    async unwrapKey(wrapped, version, aad) {
      await trip('unwrapKey');
      return inner.unwrapKey(wrapped, version, aad);
    },
    close: () => inner.close(),
    failOn(method, n) {
      traps.push({
        method,
        left: n,
        spring: async () => {
          throw new AppError('ERR_KEK_UNAVAILABLE', 'the provider is not answering');
        },
      });
    },
    holdOn(method, n) {
      let reached!: () => void;
      let release!: () => void;
      const reachedPromise = new Promise<void>((resolve) => (reached = resolve));
      const released = new Promise<void>((resolve) => (release = resolve));
      traps.push({
        method,
        left: n,
        spring: () => {
          reached();
          return released;
        },
      });
      return { reached: reachedPromise, release };
    },
  };
}
